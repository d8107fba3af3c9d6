import { type BackendTlsProtocol, backendTlsProtocols, type ProxyPlatform, type TlsPolicyName } from "../settings/settingsTable";

/**
 * TLS policies as data, after Mozilla's server-side TLS guidelines
 * (https://ssl-config.mozilla.org/guidelines/6.0.json). The renderer writes the
 * policy's name and version into the config so a reviewer can check it against the source.
 */
export interface TlsPolicy {
    /** Human name, written into the rendered config. */
    readonly name: string;
    /** Version of Mozilla's guidelines this policy follows. */
    readonly guidelinesVersion: string;
    readonly protocols: readonly string[];
    /** TLS 1.2 cipher suites, OpenSSL names, in Mozilla's order. TLS 1.3 suites are OpenSSL's defaults. */
    readonly tls12Ciphers: readonly string[];
    /** Key-exchange groups. */
    readonly curves: readonly string[];
    readonly sessionTimeout: string;
    readonly hstsMaxAgeSeconds: number;
    /** Where this policy knowingly departs from the guidelines, and why. */
    readonly deviations: readonly string[];
}

/** Mozilla "intermediate": TLS 1.2 and 1.3, ECDHE with AEAD ciphers only. */
export const mozillaIntermediate: TlsPolicy = {
    name: "mozilla-intermediate",
    guidelinesVersion: "6.0",
    protocols: ["TLSv1.2", "TLSv1.3"],
    tls12Ciphers: [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ],
    curves: ["X25519", "prime256v1", "secp384r1"],
    sessionTimeout: "1d",
    hstsMaxAgeSeconds: 63072000,
    deviations: ["X25519MLKEM768 omitted from the curves: it needs OpenSSL 3.5+, and Debian 12's nginx links OpenSSL 3.0."],
};

/** Mozilla "modern": TLS 1.3 only. For fleets whose clients are all recent. */
export const mozillaModern: TlsPolicy = {
    name: "mozilla-modern",
    guidelinesVersion: "6.0",
    protocols: ["TLSv1.3"],
    tls12Ciphers: [],
    curves: ["X25519", "prime256v1", "secp384r1"],
    sessionTimeout: "1d",
    hstsMaxAgeSeconds: 63072000,
    deviations: mozillaIntermediate.deviations,
};

/** The policies by the names the `tlsPolicy` setting takes. */
export const tlsPolicies: Readonly<Record<TlsPolicyName, TlsPolicy>> = {
    "mozilla-intermediate": mozillaIntermediate,
    "mozilla-modern": mozillaModern,
};

/** The post-quantum hybrid group Mozilla's guidelines list first, which OpenSSL 3.5 and later offer. */
export const postQuantumGroup = "X25519MLKEM768";

/**
 * The policy as the proxy's platform can serve it: on Debian 13 (OpenSSL 3.5) the hybrid group
 * comes first, as in Mozilla's guidelines; Debian 12's NGINX refuses the name (OpenSSL 3.0).
 */
export function tlsPolicyFor(name: TlsPolicyName, platform: ProxyPlatform): TlsPolicy {
    const policy = tlsPolicies[name];
    if (platform === "debian-12") return policy;
    return { ...policy, curves: [postQuantumGroup, ...policy.curves], deviations: [] };
}

export type { BackendTlsProtocol, TlsPolicyName };
/*
 * What the proxy may speak to the backends (the `backendTlsProtocol` setting): one protocol, so
 * every connection behaves alike.
 * NGINX 1.22 keeps one session per backend and worker and offers it on the next connection.
 * - TLSv1.2: every connection after the first resumes it: no key exchange, no certificate
 *   parsing or checking, about 60% fewer instructions per new WebSocket on the proxy. Resumed
 *   connections' keys come from the full handshake's secret, so a thief of that secret or of
 *   the backend's ticket key could read them; backend/ bounds this by expiring sessions and
 *   replacing its ticket key every 5 minutes.
 * - TLSv1.3: forward secrecy for every connection. NGINX 1.22 resumes a TLS 1.3 session only
 *   once and Node's server issues no ticket on a resumed connection, so every other handshake
 *   to a backend is a full one.
 */
export { backendTlsProtocols };

/** The ECDHE and AEAD suites of Mozilla's intermediate list that the backends' ECDSA certificates can serve. */
export const backendTls12Ciphers = mozillaIntermediate.tls12Ciphers.filter((c) => c.startsWith("ECDHE-ECDSA-"));
