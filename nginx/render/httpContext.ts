import type { EdgeConfigSpec } from "../edgeConfigSpec";
import { affinityMaps, originPolicyMap } from "./affinity";
import { RenderError, type ValueGuard } from "./valueGuard";

/** What every request in the `http` context shares: logs, temp files, header limits, connection counters, the upgrade map. */
export function httpBasics(v: ValueGuard, spec: EdgeConfigSpec): string[] {
    const { paths, limits } = spec;
    return [
        "    server_tokens off;",
        `    access_log ${v.path("paths.accessLog", paths.accessLog)};`,
        ...tempPaths(v, paths.tempDir),
        `    client_header_timeout ${v.positiveInt("limits.clientHeaderTimeoutSeconds", limits.clientHeaderTimeoutSeconds)}s;`,
        `    large_client_header_buffers ${v.positiveInt("limits.largeHeaderBuffers.count", limits.largeHeaderBuffers.count)} ${v.positiveInt("limits.largeHeaderBuffers.sizeKiB", limits.largeHeaderBuffers.sizeKiB)}k;`,
        ...connectionLimitZone(v, limits.connectionsPerAddress),
        ...totalSocketZone(v, limits.totalSockets),
        "",
        "    # --- WebSocket upgrade ------------------------------------------------------------",
        '    # Forward the client\'s Connection intent instead of forcing "upgrade": plain requests',
        "    # (health checks, probes) reach the backend as ordinary closing requests.",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        ''      close;",
        "    }",
        ...realClientAddress(v, spec),
        ...affinityMaps(v, spec),
        ...originPolicyMap(v, spec),
    ];
}

/**
 * Behind the load balancer, the client's address comes from the PROXY protocol header, and only
 * when the connection comes from the balancer's side: a client that reaches a proxy some other
 * way and sends its own header keeps its real address. Everything keyed on $remote_addr
 * (ip_hash, limit_conn, X-Forwarded-For, the logs) then sees the client.
 */
function realClientAddress(v: ValueGuard, spec: EdgeConfigSpec): string[] {
    const trusted = spec.listen.proxyProtocolFrom;
    if (trusted === undefined) return [];
    if (trusted.length === 0) throw new RenderError("listen.proxyProtocolFrom", "[]", "at least one address or range");
    return [
        "",
        "    # --- Client address ---------------------------------------------------------------",
        "    # The load balancer sends each client's address in a PROXY protocol header; it is",
        "    # believed only from the balancer's side, so no client can claim another's address.",
        ...trusted.map((range, i) => `    set_real_ip_from ${v.addressRange(`listen.proxyProtocolFrom[${i}]`, range)};`),
        "    real_ip_header proxy_protocol;",
    ];
}

function tempPaths(v: ValueGuard, tempDir: string | undefined): string[] {
    if (tempDir === undefined) return [];
    const dir = v.path("paths.tempDir", tempDir);
    return [
        "    # Temp files under the stack's own directory, so NGINX runs without root.",
        ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((kind) => `    ${kind}_temp_path ${dir}/${kind};`),
    ];
}

function connectionLimitZone(v: ValueGuard, perAddress: number): string[] {
    if (v.nonNegativeInt("limits.connectionsPerAddress", perAddress) === 0) return [];
    return ["    limit_conn_zone $binary_remote_addr zone=per_client_address:10m;"];
}

/** The server's limits on sockets: per client address, and for the whole edge. */
export function connectionLimits(v: ValueGuard, { limits }: EdgeConfigSpec): string[] {
    return [...connectionLimit(v, limits.connectionsPerAddress), ...totalSocketLimit(v, limits.totalSockets)];
}

function connectionLimit(v: ValueGuard, perAddress: number): string[] {
    if (perAddress === 0) return [];
    return [
        "        # One address may not hold more than this many sockets; the rest get 503.",
        `        limit_conn per_client_address ${v.positiveInt("limits.connectionsPerAddress", perAddress)};`,
    ];
}

/** NGINX refuses a limit_conn of 65536 or more for one key. */
const maxConnectionsPerKey = 65535;

/**
 * How the edge's socket ceiling is counted: by one key when it fits NGINX's limit, otherwise
 * spread over 10 or 100 keys by the last digits of the connection's serial number, which NGINX
 * hands out in turn, so each key holds an even share.
 */
function socketBuckets(total: number): { digits: number; perBucket: number } {
    const digits = total <= maxConnectionsPerKey ? 0 : total <= 10 * maxConnectionsPerKey ? 1 : 2;
    return { digits, perBucket: Math.ceil(total / 10 ** digits) };
}

function totalSocketZone(v: ValueGuard, total: number | undefined): string[] {
    if (total === undefined) return [];
    const { digits } = socketBuckets(v.positiveInt("limits.totalSockets", total));
    if (digits === 0) {
        return [
            "    # One counter for the whole edge, shared by every worker: its key is the same for all.",
            "    limit_conn_zone $server_port zone=edge_sockets:1m;",
        ];
    }
    return [
        `    # The edge's ceiling is above what NGINX counts under one key (65535): ${10 ** digits} counters,`,
        "    # by the last digits of each connection's serial number, share it evenly.",
        "    map $connection $edge_socket_bucket {",
        "        default 0;",
        `        ~(${"[0-9]".repeat(digits)})$ $1;`,
        "    }",
        "    limit_conn_zone $edge_socket_bucket zone=edge_sockets:1m;",
    ];
}

function totalSocketLimit(v: ValueGuard, total: number | undefined): string[] {
    if (total === undefined) return [];
    const { digits, perBucket } = socketBuckets(v.positiveInt("limits.totalSockets", total));
    return [
        "        # What this host's memory holds (instance memory, measured cost per socket); beyond it",
        `        # new connections get 503 instead of the host running out of memory.${digits === 0 ? "" : ` Per counter, of ${10 ** digits}.`}`,
        `        limit_conn edge_sockets ${perBucket};`,
    ];
}
