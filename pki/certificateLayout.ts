/**
 * Where certificates and keys live, relative to a release directory on the proxy and to
 * the TLS directory on a backend. The AWS deploy, the local stack and the rendered
 * nginx.conf all take their paths from here.
 */
export const edgeTlsFiles = {
    /** Edge leaf followed by the chain clients need. */
    certificate: "tls/edge.crt",
    certificateKey: "tls/edge.key",
    /** The CA that backend certificates must chain to. */
    backendCa: "tls/backend-ca.crt",
    proxyClientCertificate: "tls/proxy-client.crt",
    proxyClientKey: "tls/proxy-client.key",
} as const;

export const backendTlsFiles = {
    certificate: "server.crt",
    key: "server.key",
    /** The CA that the proxy's client certificate must chain to. */
    clientCa: "client-ca.crt",
} as const;
