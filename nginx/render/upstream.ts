import type { EdgeConfigSpec, UpstreamServer } from "../edgeConfigSpec";
import { RenderError, type ValueGuard } from "./valueGuard";

export const upstreamName = "wss_backends";

/** The backends, in the order given: that order is each client's ip_hash slot. */
export function upstreamBlock(v: ValueGuard, { upstream }: EdgeConfigSpec): string[] {
    if (upstream.servers.length === 0) throw new RenderError("upstream.servers", "[]", "at least one backend");
    const failures = `max_fails=${v.positiveInt("upstream.maxFails", upstream.maxFails)} fail_timeout=${v.positiveInt("upstream.failTimeoutSeconds", upstream.failTimeoutSeconds)}s`;
    return [
        "    # --- Backends -------------------------------------------------------------------",
        `    upstream ${upstreamName} {`,
        "        # Sticky by client address: the first three octets of an IPv4 address, the whole",
        "        # IPv6 address. A client whose address changes may land on another backend.",
        "        ip_hash;",
        ...upstream.servers.map((server, i) => `        server ${upstreamAddress(v, server, i)} ${failures};`),
        "    }",
    ];
}

function upstreamAddress(v: ValueGuard, server: UpstreamServer, index: number): string {
    const address = v.address(`upstream.servers[${index}].address`, server.address);
    const host = address.includes(":") ? `[${address}]` : address;
    return `${host}:${v.port(`upstream.servers[${index}].port`, server.port)}`;
}
