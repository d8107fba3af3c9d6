import type { EdgeConfigSpec, UpstreamServer } from "../edgeConfigSpec";
import { affinityBalancing } from "./affinity";
import { RenderError, type ValueGuard } from "./valueGuard";

export const upstreamName = "wss_backends";

/**
 * The backends, in the order given: that order is each client's ip_hash slot. The zone shares
 * each backend's state among the workers: its open sockets (max_conns counts them all, not each
 * worker's) and its failures (a backend one worker found dead is skipped by the others too).
 */
export function upstreamBlock(v: ValueGuard, spec: EdgeConfigSpec): string[] {
    const { upstream } = spec;
    if (upstream.servers.length === 0) throw new RenderError("upstream.servers", "[]", "at least one backend");
    const failures = `max_fails=${v.positiveInt("upstream.maxFails", upstream.maxFails)} fail_timeout=${v.positiveInt("upstream.failTimeoutSeconds", upstream.failTimeoutSeconds)}s`;
    return [
        "    # --- Backends -------------------------------------------------------------------",
        `    upstream ${upstreamName} {`,
        `        zone ${upstreamName} 64k;`,
        ...affinityBalancing(v, spec),
        ...upstream.servers.map((server, i) => `        server ${upstreamAddress(v, server, i)} ${failures}${maxConns(v, server, i)};`),
        "    }",
    ];
}

function maxConns(v: ValueGuard, server: UpstreamServer, index: number): string {
    return server.maxConns === undefined ? "" : ` max_conns=${v.positiveInt(`upstream.servers[${index}].maxConns`, server.maxConns)}`;
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
