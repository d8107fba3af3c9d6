import type { EdgeConfigSpec, UpstreamServer } from "../edgeConfigSpec";
import { affinityBalancing } from "./affinity";
import { RenderError, type ValueGuard } from "./valueGuard";

export const upstreamName = "wss_backends";

/** The backends, in the order given: that order is each client's ip_hash slot. */
export function upstreamBlock(v: ValueGuard, spec: EdgeConfigSpec): string[] {
    const { upstream } = spec;
    if (upstream.servers.length === 0) throw new RenderError("upstream.servers", "[]", "at least one backend");
    const failures = `max_fails=${v.positiveInt("upstream.maxFails", upstream.maxFails)} fail_timeout=${v.positiveInt("upstream.failTimeoutSeconds", upstream.failTimeoutSeconds)}s`;
    return [
        "    # --- Backends -------------------------------------------------------------------",
        `    upstream ${upstreamName} {`,
        ...affinityBalancing(v, spec),
        ...upstream.servers.map((server, i) => `        server ${upstreamAddress(v, server, i)} ${failures};`),
        "    }",
    ];
}

function upstreamAddress(v: ValueGuard, server: UpstreamServer, index: number): string {
    const address = v.address(`upstream.servers[${index}].address`, server.address);
    const host = address.includes(":") ? `[${address}]` : address;
    return `${host}:${v.port(`upstream.servers[${index}].port`, server.port)}`;
}
