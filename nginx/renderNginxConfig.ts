import { isHostName, isIpLiteral } from "../settings/addresses";
import { EdgeConfigSpec, UpstreamServer } from "./edgeConfigSpec";
import { BackendTlsProtocol, backendTls12Ciphers, backendTlsProtocols } from "./tlsPolicy";

export const upstreamName = "wss_backends";
export const healthPath = "/healthz";

/**
 * Renders the edge's complete nginx.conf. Pure: the same spec always gives the same
 * bytes, which is what the deploy trigger hashes and what the pull-request preview diffs.
 *
 * Every value that lands in the text is checked against the shape NGINX expects for that
 * position, so no caller can smuggle a `;`, a brace or a variable into the config.
 */
export function renderNginxConfig(spec: EdgeConfigSpec): string {
    const v = new ValueGuard();
    const { tls, upstream, backendTls, timeouts, limits, workers, paths } = spec;

    if (spec.serverNames.length === 0) throw new RenderError("serverNames", "[]", "at least one name");
    if (upstream.servers.length === 0) throw new RenderError("upstream.servers", "[]", "at least one backend");

    const listenAddress = spec.listen.address === undefined ? "" : `${v.address("listen.address", spec.listen.address)}:`;
    const listenPort = v.port("listen.port", spec.listen.port);
    const idle = v.positiveInt("timeouts.idleSeconds", timeouts.idleSeconds);

    const lines: string[] = [
        "# wss-edge: NGINX terminating TLS for WebSockets and proxying them, re-encrypted, to the backends.",
        "# Rendered by nginx/renderNginxConfig.ts; edit the stack's settings, not this file.",
        "",
        ...(workers.user === undefined ? [] : [`user ${v.word("workers.user", workers.user)};`]),
        `worker_processes ${workers.processes === "auto" ? "auto" : v.positiveInt("workers.processes", workers.processes)};`,
        "# Each proxied socket holds two descriptors (client and backend side), plus files and logs.",
        `worker_rlimit_nofile ${v.positiveInt("workers.fileLimit", workers.fileLimit)};`,
        "# A reload retires the old workers; they keep serving their open sockets for this long, then",
        "# close them so clients reconnect to the new workers. Bounded so that many deploys in a row",
        "# cannot pile up old workers (with old backends and certificates) for ever.",
        `worker_shutdown_timeout ${v.positiveInt("workers.shutdownTimeoutSeconds", workers.shutdownTimeoutSeconds)}s;`,
        `pid ${v.path("paths.pidFile", paths.pidFile)};`,
        `error_log ${v.path("paths.errorLog", paths.errorLog)} warn;`,
        "",
        "events {",
        "    # Counts client and backend connections alike: room for half as many WebSockets.",
        `    worker_connections ${v.positiveInt("workers.connections", workers.connections)};`,
        "}",
        "",
        "http {",
        "    server_tokens off;",
        `    access_log ${v.path("paths.accessLog", paths.accessLog)};`,
        ...tempPaths(v, paths.tempDir),
        `    client_header_timeout ${v.positiveInt("limits.clientHeaderTimeoutSeconds", limits.clientHeaderTimeoutSeconds)}s;`,
        `    large_client_header_buffers ${v.positiveInt("limits.largeHeaderBuffers.count", limits.largeHeaderBuffers.count)} ${v.positiveInt("limits.largeHeaderBuffers.sizeKiB", limits.largeHeaderBuffers.sizeKiB)}k;`,
        ...connectionLimitZone(v, limits.connectionsPerAddress),
        ...totalSocketZone(v, limits.totalSockets),
        "",
        "    # --- WebSocket upgrade ------------------------------------------------------------",
        "    # Forward the client's Connection intent instead of forcing \"upgrade\": plain requests",
        "    # (health checks, probes) reach the backend as ordinary closing requests.",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        ''      close;",
        "    }",
        "",
        "    # --- Backends -------------------------------------------------------------------",
        `    upstream ${upstreamName} {`,
        "        # Sticky by client address: the first three octets of an IPv4 address, the whole",
        "        # IPv6 address. A client whose address changes may land on another backend.",
        "        ip_hash;",
        ...upstream.servers.map(
            (server, i) =>
                `        server ${upstreamAddress(v, server, i)} max_fails=${v.positiveInt("upstream.maxFails", upstream.maxFails)} fail_timeout=${v.positiveInt("upstream.failTimeoutSeconds", upstream.failTimeoutSeconds)}s;`,
        ),
        "    }",
        "",
        `    # --- TLS policy: ${tls.policy.name}, Mozilla guidelines ${tls.policy.guidelinesVersion} ----------------------`,
        ...tls.policy.deviations.map((d) => `    # Deviation: ${d}`),
        `    ssl_protocols ${tls.policy.protocols.map((p) => v.word("tls.policy.protocols", p)).join(" ")};`,
        ...(tls.policy.tls12Ciphers.length > 0
            ? [`    ssl_ciphers ${tls.policy.tls12Ciphers.map((c) => v.word("tls.policy.tls12Ciphers", c)).join(":")};`]
            : []),
        `    ssl_ecdh_curve ${tls.policy.curves.map((c) => v.word("tls.policy.curves", c)).join(":")};`,
        "    ssl_prefer_server_ciphers off;",
        `    ssl_session_cache shared:wss_edge_tls:${v.positiveInt("tls.sessionCacheMiB", tls.sessionCacheMiB)}m;`,
        `    ssl_session_timeout ${v.word("tls.policy.sessionTimeout", tls.policy.sessionTimeout)};`,
        "    # Tickets would be encrypted with a key that never rotates while workers live; the",
        "    # shared cache gives resumption without that.",
        "    ssl_session_tickets off;",
        "    # NGINX keeps this send buffer for a connection's life once it has answered on it (the",
        "    # 101); upgraded traffic bypasses it, and nothing else here answers with much. 1k",
        "    # instead of the default 16k saves ~11 KiB per socket.",
        "    ssl_buffer_size 1k;",
        "",
        ...unknownNameServer(spec, listenAddress, listenPort),
        "    server {",
        ...tlsListen(spec, listenAddress, listenPort, !spec.rejectUnknownNames),
        "        # No http2 here: NGINX 1.22 cannot carry WebSockets over HTTP/2, and a client",
        "        # that negotiated h2 through ALPN could not upgrade.",
        `        server_name ${spec.serverNames.map((n) => v.serverName("serverNames", n)).join(" ")};`,
        "",
        `        ssl_certificate ${v.path("tls.certificate", tls.certificate)};`,
        `        ssl_certificate_key ${v.path("tls.certificateKey", tls.certificateKey)};`,
        `        add_header Strict-Transport-Security "max-age=${v.positiveInt("tls.policy.hstsMaxAgeSeconds", tls.policy.hstsMaxAgeSeconds)}" always;`,
        ...connectionLimit(v, limits.connectionsPerAddress),
        ...totalSocketLimit(v, limits.totalSockets),
        "",
        "        # Answered by NGINX itself: says the edge is up, whatever the backends are doing.",
        `        location = ${healthPath} {`,
        "            access_log off;",
        "            default_type text/plain;",
        '            return 200 "ok\\n";',
        "        }",
        "",
        "        location / {",
        `            proxy_pass https://${upstreamName};`,
        "            proxy_http_version 1.1;",
        "            proxy_set_header Upgrade $http_upgrade;",
        "            proxy_set_header Connection $connection_upgrade;",
        "            proxy_set_header Host $host;",
        "            # This is the first hop: replace whatever the client sent, so it cannot forge it.",
        "            proxy_set_header X-Forwarded-For $remote_addr;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "",
        "            # An upgraded socket closes when the backend sends nothing for this long; the",
        "            # backends ping well inside it, so only dead sockets hit it.",
        `            proxy_read_timeout ${idle}s;`,
        `            proxy_send_timeout ${idle}s;`,
        `            proxy_connect_timeout ${v.positiveInt("timeouts.connectSeconds", timeouts.connectSeconds)}s;`,
        "            # A refused connection or failed TLS handshake with one backend tries the next;",
        "            # nothing has reached the client yet, so the retry is invisible to it.",
        "            proxy_next_upstream error timeout http_502 http_503;",
        `            proxy_next_upstream_tries ${Math.min(3, upstream.servers.length)};`,
        `            proxy_next_upstream_timeout ${v.positiveInt("timeouts.connectSeconds", timeouts.connectSeconds) * 2}s;`,
        "",
        "            # Re-encrypt to the backends and check who they are (mutual TLS).",
        "            proxy_ssl_verify on;",
        "            proxy_ssl_verify_depth 2;",
        `            proxy_ssl_trusted_certificate ${v.path("backendTls.trustedCertificate", backendTls.trustedCertificate)};`,
        `            proxy_ssl_name ${v.hostName("backendTls.serverName", backendTls.serverName)};`,
        "            proxy_ssl_server_name on;",
        ...backendProtocol(v, backendTls.protocol),
        `            proxy_ssl_certificate ${v.path("backendTls.clientCertificate", backendTls.clientCertificate)};`,
        `            proxy_ssl_certificate_key ${v.path("backendTls.clientCertificateKey", backendTls.clientCertificateKey)};`,
        "            proxy_ssl_session_reuse on;",
        "        }",
        "    }",
        ...httpRedirectServer(v, spec.httpRedirectPort, spec.listen.ipv6 && spec.listen.address === undefined, listenPort),
        "}",
        "",
    ];
    return lines.join("\n");
}

/**
 * The TLS listen lines. The first server on a port carries its options: `default_server`, and
 * `reuseport`, so the kernel spreads connections evenly over the workers.
 */
function tlsListen(spec: EdgeConfigSpec, address: string, port: number, first: boolean): string[] {
    const options = first ? " default_server reuseport" : "";
    return [
        `        listen ${address}${port} ssl${options};`,
        ...(spec.listen.ipv6 && spec.listen.address === undefined ? [`        listen [::]:${port} ssl${options};`] : []),
    ];
}

/** The backend leg's protocol, and what choosing it means (see `backendTlsProtocols`). */
function backendProtocol(v: ValueGuard, protocol: BackendTlsProtocol): string[] {
    if (!backendTlsProtocols.includes(protocol)) throw new RenderError("backendTls.protocol", String(protocol), `one of ${backendTlsProtocols.join(", ")}`);
    if (protocol === "TLSv1.3") {
        return ["            # TLS 1.3: fresh keys for every connection; every other handshake is a full one.", "            proxy_ssl_protocols TLSv1.3;"];
    }
    return [
        "            # TLS 1.2: each worker resumes its session with a backend on every connection, so a",
        "            # new WebSocket costs no key exchange or certificate check on this leg. The backend",
        "            # app (backend/) expires sessions and replaces its ticket key every 5 minutes.",
        "            proxy_ssl_protocols TLSv1.2;",
        `            proxy_ssl_ciphers ${backendTls12Ciphers.map((c) => v.word("backendTls.ciphers", c)).join(":")};`,
    ];
}

function unknownNameServer(spec: EdgeConfigSpec, address: string, port: number): string[] {
    if (!spec.rejectUnknownNames) return [];
    return [
        "    # Handshakes naming no host of this edge (scanners, misdirected clients) are refused",
        "    # before any certificate is shown; a request whose Host is not this edge's, on a",
        "    # connection made for one of its names, is refused too.",
        "    server {",
        ...tlsListen(spec, address, port, true),
        "        ssl_reject_handshake on;",
        "        return 421;",
        "    }",
        "",
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
        return ["    # One counter for the whole edge, shared by every worker: its key is the same for all.", "    limit_conn_zone $server_port zone=edge_sockets:1m;"];
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

function httpRedirectServer(v: ValueGuard, port: number | undefined, ipv6: boolean, tlsPort: number): string[] {
    if (port === undefined) return [];
    const p = v.port("httpRedirectPort", port);
    const target = tlsPort === 443 ? "https://$host$request_uri" : `https://$host:${tlsPort}$request_uri`;
    return [
        "",
        "    # Plain HTTP only ever redirects to the TLS listener.",
        "    server {",
        `        listen ${p};`,
        ...(ipv6 ? [`        listen [::]:${p};`] : []),
        `        return 301 ${target};`,
        "    }",
    ];
}

function upstreamAddress(v: ValueGuard, server: UpstreamServer, index: number): string {
    const address = v.address(`upstream.servers[${index}].address`, server.address);
    const host = address.includes(":") ? `[${address}]` : address;
    return `${host}:${v.port(`upstream.servers[${index}].port`, server.port)}`;
}

export class RenderError extends Error {
    constructor(
        readonly field: string,
        readonly value: string,
        readonly rule: string,
    ) {
        super(`cannot render nginx.conf: ${field} = ${JSON.stringify(value)} is not ${rule}`);
        this.name = "RenderError";
    }
}

/** Checks each value against the shape its position in the config allows. */
class ValueGuard {
    positiveInt(field: string, n: number): number {
        if (!Number.isSafeInteger(n) || n < 1) throw new RenderError(field, String(n), "a positive whole number");
        return n;
    }
    nonNegativeInt(field: string, n: number): number {
        if (!Number.isSafeInteger(n) || n < 0) throw new RenderError(field, String(n), "a whole number of 0 or more");
        return n;
    }
    port(field: string, n: number): number {
        if (!Number.isSafeInteger(n) || n < 1 || n > 65535) throw new RenderError(field, String(n), "a port from 1 to 65535");
        return n;
    }
    path(field: string, p: string): string {
        if (!/^[A-Za-z0-9_./-]+$/.test(p) || p.split("/").includes("..")) {
            throw new RenderError(field, p, "a path of letters, digits, '_', '.', '-' and '/' without '..'");
        }
        return p;
    }
    word(field: string, w: string): string {
        if (!/^[A-Za-z0-9_.-]+$/.test(w)) throw new RenderError(field, w, "a single word of letters, digits, '_', '.' and '-'");
        return w;
    }
    hostName(field: string, name: string): string {
        if (!isHostName(name)) throw new RenderError(field, name, "a DNS host name");
        return name;
    }
    /** server_name also takes a leading wildcard label. */
    serverName(field: string, name: string): string {
        if (!isHostName(name.startsWith("*.") ? name.slice(2) : name)) {
            throw new RenderError(field, name, "a DNS host name, optionally starting with '*.'");
        }
        return name;
    }
    address(field: string, a: string): string {
        if (!isIpLiteral(a) && !isHostName(a)) throw new RenderError(field, a, "an IP address or a DNS host name");
        return a;
    }
}
