import { X509Certificate } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import type { CertificateSpec, PkiSpec } from "../pki/pkiSpec";

export interface EdgePkiArgs {
    readonly spec: PkiSpec;
    /** Edge IP SANs only known at deploy time (the Elastic IP). */
    readonly edgeIpAddresses?: pulumi.Input<string>[];
    /** Names known only once resources exist (the load balancer's DNS name), added to the edge certificate. */
    readonly edgeDnsNames?: pulumi.Input<string>[];
    /** The edge certificate chain and key from elsewhere (yours, or an ACME CA's), used when `spec.edge` is undefined. */
    readonly userCertificate?: {
        readonly certificatePem: pulumi.Input<string>;
        readonly privateKeyPem: pulumi.Input<string>;
        /** When it expires, if known without reading the certificate (an ACME order's). */
        readonly notAfter?: pulumi.Input<string>;
    };
}

export interface IssuedCertificate {
    readonly name: string;
    readonly certificatePem: pulumi.Output<string>;
    /** Always a secret. */
    readonly privateKeyPem: pulumi.Output<string>;
}

/**
 * The edge's internal CA and everything it signs: the edge certificate (unless the user
 * brings one), one server certificate per backend, and the proxy's client certificate.
 * Private keys stay secrets end to end.
 */
export class EdgePki extends pulumi.ComponentResource {
    readonly caCertificatePem: pulumi.Output<string>;
    /** Leaf then chain, as NGINX's ssl_certificate wants it. */
    readonly edgeCertificateChainPem: pulumi.Output<string>;
    readonly edgePrivateKeyPem: pulumi.Output<string>;
    readonly backendCertificates: IssuedCertificate[];
    readonly proxyClientCertificate: IssuedCertificate;
    /** When each certificate expires (RFC 3339), by name: ca, edge, backend-N, proxy-client. */
    readonly expiry: pulumi.Output<Record<string, string>>;

    constructor(name: string, args: EdgePkiArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:pki:EdgePki", name, {}, opts);
        const { spec } = args;

        // Every certificate and every client trusts the CA: replacing it by accident (a changed
        // subject, a provider upgrade) would break them all. Protected, a replacement stops the
        // update instead; to really rotate it, unprotect it first (see docs/aws.md).
        const caKey = this.privateKey(`${name}-ca`, spec, { protect: true });
        const ca = new tls.SelfSignedCert(
            `${name}-ca`,
            {
                privateKeyPem: caKey.privateKeyPem,
                isCaCertificate: true,
                maxPathLength: 0,
                subject: { commonName: spec.ca.commonName, organization: spec.organization },
                validityPeriodHours: spec.ca.validityHours,
                allowedUses: ["cert_signing", "crl_signing", "digital_signature"],
            },
            { parent: this, protect: true },
        );
        this.caCertificatePem = ca.certPem;

        const expiry: Record<string, pulumi.Output<string>> = { ca: ca.validityEndTime };
        const issue = (
            cert: CertificateSpec,
            extraIps: pulumi.Input<string>[] = [],
            extraNames: pulumi.Input<string>[] = [],
        ): IssuedCertificate => {
            const key = this.privateKey(`${name}-${cert.name}`, spec);
            const request = new tls.CertRequest(
                `${name}-${cert.name}`,
                {
                    privateKeyPem: key.privateKeyPem,
                    subject: { commonName: cert.commonName, organization: spec.organization },
                    dnsNames: [...cert.dnsNames, ...extraNames],
                    ipAddresses: [...cert.ipAddresses, ...extraIps],
                },
                { parent: this },
            );
            const signed = new tls.LocallySignedCert(
                `${name}-${cert.name}`,
                {
                    certRequestPem: request.certRequestPem,
                    caPrivateKeyPem: caKey.privateKeyPem,
                    caCertPem: ca.certPem,
                    validityPeriodHours: spec.leafValidityHours,
                    earlyRenewalHours: spec.leafEarlyRenewalHours,
                    allowedUses: ["digital_signature", "key_encipherment", ...cert.usages],
                },
                { parent: this },
            );
            expiry[cert.name] = signed.validityEndTime;
            return { name: cert.name, certificatePem: signed.certPem, privateKeyPem: pulumi.secret(key.privateKeyPem) };
        };

        if (spec.edge) {
            const edge = issue(spec.edge, args.edgeIpAddresses, args.edgeDnsNames);
            this.edgeCertificateChainPem = pulumi.interpolate`${edge.certificatePem}${ca.certPem}`;
            this.edgePrivateKeyPem = edge.privateKeyPem;
        } else if (args.userCertificate) {
            this.edgeCertificateChainPem = pulumi.output(args.userCertificate.certificatePem);
            this.edgePrivateKeyPem = pulumi.secret(args.userCertificate.privateKeyPem);
            expiry.edge = args.userCertificate.notAfter
                ? pulumi.output(args.userCertificate.notAfter)
                : this.edgeCertificateChainPem.apply((pem) => expiryOf(pem) ?? "");
        } else {
            throw new Error("EdgePki: spec.edge is undefined, so userCertificate is required");
        }
        this.backendCertificates = spec.backends.map((backend) => issue(backend));
        this.proxyClientCertificate = issue(spec.proxyClient);

        this.expiry = pulumi.all(expiry);

        this.registerOutputs({
            caCertificatePem: this.caCertificatePem,
            edgeCertificateChainPem: this.edgeCertificateChainPem,
            backendCertificatePems: this.backendCertificates.map((c) => c.certificatePem),
            expiry: this.expiry,
            proxyClientCertificatePem: this.proxyClientCertificate.certificatePem,
        });
    }

    private privateKey(name: string, spec: PkiSpec, opts: pulumi.CustomResourceOptions = {}): tls.PrivateKey {
        const algorithm = { "ECDSA-P256": { algorithm: "ECDSA", ecdsaCurve: "P256" } }[spec.keyAlgorithm];
        return new tls.PrivateKey(name, algorithm, { ...opts, parent: this });
    }
}

/** The expiry of the first certificate in a PEM chain, as RFC 3339; undefined if it does not parse. */
function expiryOf(chainPem: string): string | undefined {
    try {
        return new Date(new X509Certificate(chainPem).validTo).toISOString();
    } catch {
        return undefined;
    }
}
