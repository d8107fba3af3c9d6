import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { CertificateSpec, PkiSpec } from "../pki/pkiSpec";

export interface EdgePkiArgs {
    readonly spec: PkiSpec;
    /** Edge IP SANs only known at deploy time (the Elastic IP). */
    readonly edgeIpAddresses?: pulumi.Input<string>[];
    /** The user's own edge certificate chain and key, used when `spec.edge` is undefined. */
    readonly userCertificate?: { readonly certificatePem: string; readonly privateKeyPem: string };
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

    constructor(name: string, args: EdgePkiArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:pki:EdgePki", name, {}, opts);
        const { spec } = args;

        const caKey = this.privateKey(`${name}-ca`, spec);
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
            { parent: this },
        );
        this.caCertificatePem = ca.certPem;

        const issue = (cert: CertificateSpec, extraIps: pulumi.Input<string>[] = []): IssuedCertificate => {
            const key = this.privateKey(`${name}-${cert.name}`, spec);
            const request = new tls.CertRequest(
                `${name}-${cert.name}`,
                {
                    privateKeyPem: key.privateKeyPem,
                    subject: { commonName: cert.commonName, organization: spec.organization },
                    dnsNames: [...cert.dnsNames],
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
            return { name: cert.name, certificatePem: signed.certPem, privateKeyPem: pulumi.secret(key.privateKeyPem) };
        };

        if (spec.edge) {
            const edge = issue(spec.edge, args.edgeIpAddresses);
            this.edgeCertificateChainPem = pulumi.interpolate`${edge.certificatePem}${ca.certPem}`;
            this.edgePrivateKeyPem = edge.privateKeyPem;
        } else if (args.userCertificate) {
            this.edgeCertificateChainPem = pulumi.output(args.userCertificate.certificatePem);
            this.edgePrivateKeyPem = pulumi.secret(args.userCertificate.privateKeyPem);
        } else {
            throw new Error("EdgePki: spec.edge is undefined, so userCertificate is required");
        }
        this.backendCertificates = spec.backends.map((backend) => issue(backend));
        this.proxyClientCertificate = issue(spec.proxyClient);

        this.registerOutputs({
            caCertificatePem: this.caCertificatePem,
            edgeCertificateChainPem: this.edgeCertificateChainPem,
            backendCertificatePems: this.backendCertificates.map((c) => c.certificatePem),
            proxyClientCertificatePem: this.proxyClientCertificate.certificatePem,
        });
    }

    private privateKey(name: string, spec: PkiSpec): tls.PrivateKey {
        const algorithm = { "ECDSA-P256": { algorithm: "ECDSA", ecdsaCurve: "P256" } }[spec.keyAlgorithm];
        return new tls.PrivateKey(name, algorithm, { parent: this });
    }
}
