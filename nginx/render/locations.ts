import type { EdgeConfigSpec } from "../edgeConfigSpec";
import { affinityKeyHeader, originPolicyCheck } from "./affinity";
import { backendTlsDirectives } from "./tls";
import { upstreamName } from "./upstream";
import type { ValueGuard } from "./valueGuard";

export const healthPath = "/healthz";

/** The edge's own health answer, and the WebSocket proxy to the backends. */
export function locations(v: ValueGuard, spec: EdgeConfigSpec): string[] {
    const { timeouts, upstream } = spec;
    const idle = v.positiveInt("timeouts.idleSeconds", timeouts.idleSeconds);
    const connect = v.positiveInt("timeouts.connectSeconds", timeouts.connectSeconds);
    return [
        "        # Answered by NGINX itself: says the edge is up, whatever the backends are doing.",
        `        location = ${healthPath} {`,
        "            access_log off;",
        "            default_type text/plain;",
        '            return 200 "ok\\n";',
        "        }",
        "",
        "        location / {",
        ...originPolicyCheck(spec),
        `            proxy_pass https://${upstreamName};`,
        "            proxy_http_version 1.1;",
        "            proxy_set_header Upgrade $http_upgrade;",
        "            proxy_set_header Connection $connection_upgrade;",
        "            proxy_set_header Host $host;",
        "            # This is the first hop: replace whatever the client sent, so it cannot forge it.",
        "            proxy_set_header X-Forwarded-For $remote_addr;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "            # The key the upstream hashed (empty: the address above), for the backend's rebalancing.",
        ...affinityKeyHeader(spec),
        "            # The client leg's TLS version, for the backend's page to show.",
        "            proxy_set_header X-Forwarded-Tls $ssl_protocol;",
        "",
        "            # An upgraded socket closes when the backend sends nothing for this long; the",
        "            # backends ping well inside it, so only dead sockets hit it.",
        `            proxy_read_timeout ${idle}s;`,
        `            proxy_send_timeout ${idle}s;`,
        `            proxy_connect_timeout ${connect}s;`,
        "            # An upgraded socket keeps two buffers of this size, one per direction, for its",
        "            # life: the tunnelBufferKiB setting (memory per socket against TLS records per message).",
        `            proxy_buffer_size ${v.positiveInt("tunnelBufferKiB", spec.tunnelBufferKiB)}k;`,
        ...responseBuffers(spec.tunnelBufferKiB),
        "            # A refused connection or failed TLS handshake with one backend tries the next;",
        "            # nothing has reached the client yet, so the retry is invisible to it.",
        "            proxy_next_upstream error timeout http_502 http_503;",
        `            proxy_next_upstream_tries ${Math.min(3, upstream.servers.length)};`,
        `            proxy_next_upstream_timeout ${connect * 2}s;`,
        "",
        ...backendTlsDirectives(v, spec),
        "        }",
    ];
}

/**
 * Buffers for plain (not upgraded) responses. NGINX requires their busy part (twice the larger of
 * proxy_buffer_size and one buffer) to stay below all of them but one: past 4k, one buffer grows
 * with it. They are allocated only while a response body is read, never for an upgraded socket.
 */
function responseBuffers(tunnelBufferKiB: number): string[] {
    if (tunnelBufferKiB <= 4) return [];
    return [`            proxy_buffers 8 ${tunnelBufferKiB}k;`];
}
