import type { EdgeConfigSpec, UpstreamServer } from "../edgeConfigSpec";
import { affinityBalancing } from "./affinity";
import { RenderError, type ValueGuard } from "./valueGuard";

export const upstreamName = "wss_backends";

/**
 * The backends, in the order given: that order is each client's ip_hash slot. No `zone`: with one,
 * NGINX keeps the backends' TLS session in shared memory and gives every upstream connection its
 * own copy of it (measured: 7 to 9 KiB more per held socket). A full backend answers 503 itself,
 * which the edge retries on the next backend (see the proxying location).
 */
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
    v.address(`upstream.servers[${index}].address`, server.address);
    v.port(`upstream.servers[${index}].port`, server.port);
    return upstreamServerName(server);
}

/** A backend as the upstream's `server` line names it, which is also what NGINX's consistent hash hashes. */
export function upstreamServerName(server: UpstreamServer): string {
    const host = server.address.includes(":") ? `[${server.address}]` : server.address;
    return `${host}:${server.port}`;
}
