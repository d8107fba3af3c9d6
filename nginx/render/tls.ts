import type { EdgeConfigSpec } from "../edgeConfigSpec";
import { type BackendTlsProtocol, backendTls12Ciphers, backendTlsProtocols } from "../tlsPolicy";
import { RenderError, type ValueGuard } from "./valueGuard";

/** The public listener's TLS policy, as a named unit with its source and deviations. */
export function tlsPolicyBlock(v: ValueGuard, { tls }: EdgeConfigSpec): string[] {
    const { policy } = tls;
    return [
        `    # --- TLS policy: ${v.comment("tls.policy.name", policy.name)}, Mozilla guidelines ${v.comment("tls.policy.guidelinesVersion", policy.guidelinesVersion)} ----------------------`,
        ...policy.deviations.map((d, i) => `    # Deviation: ${v.comment(`tls.policy.deviations[${i}]`, d)}`),
        `    ssl_protocols ${policy.protocols.map((p) => v.word("tls.policy.protocols", p)).join(" ")};`,
        ...(policy.tls12Ciphers.length > 0
            ? [`    ssl_ciphers ${policy.tls12Ciphers.map((c) => v.word("tls.policy.tls12Ciphers", c)).join(":")};`]
            : []),
        `    ssl_ecdh_curve ${policy.curves.map((c) => v.word("tls.policy.curves", c)).join(":")};`,
        "    ssl_prefer_server_ciphers off;",
        `    ssl_session_cache shared:wss_edge_tls:${v.positiveInt("tls.sessionCacheMiB", tls.sessionCacheMiB)}m;`,
        `    ssl_session_timeout ${v.word("tls.policy.sessionTimeout", policy.sessionTimeout)};`,
        "    # Tickets would be encrypted with a key that never rotates while workers live; the",
        "    # shared cache gives resumption without that.",
        "    ssl_session_tickets off;",
        "    # NGINX keeps this send buffer for a connection's life once it has answered on it (the",
        "    # 101); upgraded traffic bypasses it, and nothing else here answers with much. 1k",
        "    # instead of the default 16k saves ~11 KiB per socket.",
        "    ssl_buffer_size 1k;",
    ];
}

/** Re-encryption to the backends, with mutual TLS. */
export function backendTlsDirectives(v: ValueGuard, { backendTls }: EdgeConfigSpec): string[] {
    return [
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
    ];
}

/** The backend leg's protocol, and what choosing it means (see `backendTlsProtocols`). */
function backendProtocol(v: ValueGuard, protocol: BackendTlsProtocol): string[] {
    if (!backendTlsProtocols.includes(protocol))
        throw new RenderError("backendTls.protocol", String(protocol), `one of ${backendTlsProtocols.join(", ")}`);
    if (protocol === "TLSv1.3") {
        return [
            "            # TLS 1.3: fresh keys for every connection; every other handshake is a full one.",
            "            proxy_ssl_protocols TLSv1.3;",
        ];
    }
    return [
        "            # TLS 1.2: each worker resumes its session with a backend on every connection, so a",
        "            # new WebSocket costs no key exchange or certificate check on this leg. The backend",
        "            # app (backend/) expires sessions and replaces its ticket key every 5 minutes.",
        "            proxy_ssl_protocols TLSv1.2;",
        `            proxy_ssl_ciphers ${backendTls12Ciphers.map((c) => v.word("backendTls.ciphers", c)).join(":")};`,
    ];
}
