/**
 * What the edge's PKI issues, as data. Two issuers read it: the PKI component with
 * @pulumi/tls for AWS, and the local stack with openssl. So a name, a SAN, a usage or a
 * validity that changes here changes in both places at once.
 */

export type KeyAlgorithm = "ECDSA-P256";
export type KeyUsage = "server_auth" | "client_auth";

export interface CertificateSpec {
    /** File stem used by the certificate layout (`<name>.crt`, `<name>.key`). */
    readonly name: string;
    readonly commonName: string;
    readonly dnsNames: readonly string[];
    readonly ipAddresses: readonly string[];
    readonly usages: readonly KeyUsage[];
}

export interface PkiSpec {
    readonly keyAlgorithm: KeyAlgorithm;
    readonly organization: string;
    readonly ca: { readonly commonName: string; readonly validityHours: number };
    /** Leaf certificates live one year at most (Mozilla's limit is 366 days). */
    readonly leafValidityHours: number;
    /** A `pulumi up` inside this window before expiry issues a fresh leaf. */
    readonly leafEarlyRenewalHours: number;
    /** The certificate clients see; `undefined` when the user supplies their own. */
    readonly edge?: CertificateSpec;
    /** One per backend, all carrying `backendServerName`, which the proxy verifies. */
    readonly backends: readonly CertificateSpec[];
    /** What the proxy presents to the backends. */
    readonly proxyClient: CertificateSpec;
}

/** The name every backend certificate carries and the proxy checks (proxy_ssl_name). */
export const backendServerName = "backends.wss-edge.internal";

export interface PkiSpecInput {
    readonly edgeDnsNames: readonly string[];
    readonly edgeIpAddresses: readonly string[];
    readonly backendCount: number;
    /** The user brings the edge certificate; the stack's CA then issues only internal ones. */
    readonly userSuppliedEdgeCertificate: boolean;
}

export function edgePkiSpec(input: PkiSpecInput): PkiSpec {
    return {
        keyAlgorithm: "ECDSA-P256",
        organization: "wss-edge",
        ca: { commonName: "wss-edge internal CA", validityHours: 10 * 365 * 24 },
        leafValidityHours: 365 * 24,
        leafEarlyRenewalHours: 30 * 24,
        edge: input.userSuppliedEdgeCertificate
            ? undefined
            : {
                  name: "edge",
                  commonName: input.edgeDnsNames[0] ?? input.edgeIpAddresses[0] ?? "wss-edge",
                  dnsNames: input.edgeDnsNames,
                  ipAddresses: input.edgeIpAddresses,
                  usages: ["server_auth"],
              },
        backends: Array.from({ length: input.backendCount }, (_, i) => ({
            name: `backend-${i + 1}`,
            commonName: `backend-${i + 1}.wss-edge.internal`,
            dnsNames: [backendServerName, `backend-${i + 1}.wss-edge.internal`],
            ipAddresses: [],
            usages: ["server_auth"] as const,
        })),
        proxyClient: {
            name: "proxy-client",
            commonName: "wss-edge proxy",
            dnsNames: [],
            ipAddresses: [],
            usages: ["client_auth"],
        },
    };
}
