/** The configs the renderer's tests look at: the default stack's proxy VM, or a local host, in front of three backends. */
import { edgeConfigSpec } from "../../nginx/edgeConfigFromSettings";
import type { EdgeConfigSpec, UpstreamServer } from "../../nginx/edgeConfigSpec";
import { renderNginxConfig } from "../../nginx/renderNginxConfig";
import { vmProxyHost } from "../../plan/capacity";
import { type RawSettings, validateSettings } from "../../settings/edgeSettings";

/** The proxy VM of the default stack: c6i.large (4 GiB, 2 vCPUs) in front of 3 backends. */
export const vmHost = vmProxyHost({ memoryMiB: 4096, vcpus: 2, backendCount: 3 });

export const backends: UpstreamServer[] = [
    { address: "10.0.1.21", port: 8443 },
    { address: "10.0.2.22", port: 8443 },
    { address: "10.0.3.23", port: 8443 },
];

/** The renderer's spec for the stack's settings plus `raw`, on `host`, in front of `servers`, named `names`. */
export const specFor = (raw: RawSettings = {}, host = vmHost, servers = backends, names = ["ws.example.com"]): EdgeConfigSpec =>
    edgeConfigSpec(validateSettings({ ...raw }), servers, host, names);

/** The config for the stack's settings plus `raw`, on `host`. */
export const render = (raw: RawSettings = {}, host = vmHost): string => renderNginxConfig(specFor(raw, host));
