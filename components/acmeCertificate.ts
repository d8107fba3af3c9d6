import { X509Certificate } from "node:crypto";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { type Dns01, issueCertificate, renewalDue, renewalTime } from "../acme/certificateIssuer";
import { Route53Dns } from "../acme/route53Dns";

/** What an order is for: a change to any of these is a new certificate. */
export interface AcmeOrderInputs {
    readonly domainName: string;
    readonly directoryUrl: string;
    readonly hostedZoneId: string;
    readonly accountKeyPem: string;
    /** The stack's `aws:profile`, which the challenge's record is written with ("" for the environment's credentials). */
    readonly awsProfile: string;
}

export interface AcmeOrderOutputs extends AcmeOrderInputs {
    /** Leaf then chain, as NGINX's ssl_certificate takes it. */
    readonly certificatePem: string;
    readonly privateKeyPem: string;
    readonly notAfter: string;
    /** From when `pulumi up` replaces it with a new one (renewalTime: a third of its lifetime left). */
    readonly renewAfter: string;
}

const orderInputs: readonly (keyof AcmeOrderInputs)[] = ["domainName", "directoryUrl", "hostedZoneId", "accountKeyPem"];

/**
 * The dynamic provider that orders the certificate, run by the Pulumi engine's dynamic-provider
 * host from its serialized closure (`@pulumi/pulumi/cmd/dynamic-provider`). `create` orders one
 * (DNS-01 through `dnsFor`'s zone). `diff` is asked at every preview and up, with the state's
 * outputs as `olds`: it replaces the certificate once it is due (`renewalDue`), so the
 * scheduled `pulumi up` renews it, and a preview says so beforehand. Nothing to delete: the CA
 * keeps no resource of ours, and the certificate expires on its own.
 */
export function acmeOrderProvider(dnsFor: (hostedZoneId: string, awsProfile: string) => Dns01): pulumi.dynamic.ResourceProvider {
    return {
        async create(inputs: AcmeOrderInputs): Promise<pulumi.dynamic.CreateResult> {
            const issued = await issueCertificate(
                { directoryUrl: inputs.directoryUrl, accountKeyPem: inputs.accountKeyPem },
                inputs.domainName,
                dnsFor(inputs.hostedZoneId, inputs.awsProfile),
            );
            const leaf = new X509Certificate(issued.certificatePem);
            const outs: AcmeOrderOutputs = {
                ...inputs,
                ...issued,
                notAfter: new Date(leaf.validTo).toISOString(),
                renewAfter: renewalTime(issued.certificatePem).toISOString(),
            };
            return { id: `${inputs.domainName}/${leaf.serialNumber}`, outs };
        },
        async diff(_id: string, olds: AcmeOrderOutputs, news: AcmeOrderInputs): Promise<pulumi.dynamic.DiffResult> {
            const replaces: string[] = orderInputs.filter((key) => olds[key] !== news[key]);
            const due = await orderRenewalDue(olds);
            if (!(Date.now() < due.at.getTime())) replaces.push(due.by);
            return { changes: replaces.length > 0, replaces };
        },
    };
}

/** When the order's certificate is due (acme/certificateIssuer.ts `renewalDue`), by the name of the output that says why. */
export async function orderRenewalDue(olds: AcmeOrderOutputs): Promise<{ readonly at: Date; readonly by: "renewalInfo" | "renewAfter" }> {
    const due = await renewalDue({ directoryUrl: olds.directoryUrl }, olds.certificatePem, new Date(olds.renewAfter));
    return { at: due.at, by: due.by === "renewalInfo" ? "renewalInfo" : "renewAfter" };
}

class AcmeOrder extends pulumi.dynamic.Resource {
    declare readonly certificatePem: pulumi.Output<string>;
    declare readonly privateKeyPem: pulumi.Output<string>;
    declare readonly notAfter: pulumi.Output<string>;
    declare readonly renewAfter: pulumi.Output<string>;

    constructor(name: string, args: { [K in keyof AcmeOrderInputs]: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
        super(
            acmeOrderProvider((zone, profile) => new Route53Dns(zone, { profile: profile || undefined })),
            name,
            { ...args, certificatePem: undefined, privateKeyPem: undefined, notAfter: undefined, renewAfter: undefined },
            { ...opts, additionalSecretOutputs: ["privateKeyPem", "accountKeyPem"] },
            "wss-edge",
            "AcmeOrder",
        );
    }
}

export interface AcmeCertificateArgs {
    readonly domainName: string;
    readonly hostedZoneId: pulumi.Input<string>;
    readonly directoryUrl: string;
}

/**
 * One certificate for the edge from an ACME CA (Let's Encrypt by default), whatever the number
 * of proxies: its account key, the order (renewed by the `pulumi up` after its renewal time, which
 * the weekly refresh workflow runs), and a copy imported into ACM, whose `DaysToExpiry` metric
 * the renewal alarm watches, so a renewal that stopped happening is seen before clients are.
 */
export class AcmeCertificate extends pulumi.ComponentResource {
    /** Leaf then chain. */
    readonly certificateChainPem: pulumi.Output<string>;
    /** Always a secret. */
    readonly privateKeyPem: pulumi.Output<string>;
    readonly notAfter: pulumi.Output<string>;
    readonly renewAfter: pulumi.Output<string>;
    /** ACM's copy, for its DaysToExpiry metric. */
    readonly acmCertificateArn: pulumi.Output<string>;

    constructor(name: string, args: AcmeCertificateArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:pki:AcmeCertificate", name, {}, opts);
        // The CA knows the account by this key: kept in state, so renewals use the same account.
        const accountKey = new tls.PrivateKey(`${name}-account`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this });
        const order = new AcmeOrder(
            `${name}-order`,
            {
                domainName: args.domainName,
                directoryUrl: args.directoryUrl,
                hostedZoneId: args.hostedZoneId,
                accountKeyPem: pulumi.secret(accountKey.privateKeyPem),
                awsProfile: aws.config.profile ?? "",
            },
            { parent: this },
        );
        this.certificateChainPem = order.certificatePem;
        this.privateKeyPem = pulumi.secret(order.privateKeyPem);
        this.notAfter = order.notAfter;
        this.renewAfter = order.renewAfter;
        // ImportCertificate again with the same ARN on renewal (an update in place): the alarm's dimension stays.
        const split = order.certificatePem.apply(splitChain);
        const copy = new aws.acm.Certificate(
            `${name}-copy`,
            {
                certificateBody: split.apply((s) => s.leaf),
                certificateChain: split.apply((s) => s.chain),
                privateKey: this.privateKeyPem,
                tags: {
                    Name: `${pulumi.getProject()}-${pulumi.getStack()}-${name}`,
                    Purpose: "DaysToExpiry metric of the edge's ACME certificate",
                },
            },
            { parent: this },
        );
        this.acmCertificateArn = copy.arn;
        this.registerOutputs({ notAfter: this.notAfter, renewAfter: this.renewAfter, acmCertificateArn: this.acmCertificateArn });
    }
}

/** The leaf and the rest of a PEM chain, as ACM's import takes them. */
export function splitChain(chainPem: string): { readonly leaf: string; readonly chain: string } {
    const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    return { leaf: blocks[0] ?? "", chain: blocks.slice(1).join("") };
}

/** The weekly refresh workflow tries every 7 days. */
const scheduleDays = 7;

/**
 * How many days before expiry the renewal alarm fires: the renewal window (a third of the
 * lifetime: 30 days for Let's Encrypt's 90) less a week and a day (22 days). By then the renewal
 * is more than a week late: at least one weekly try failed or did not run.
 */
export function renewalAlarmDaysLeft(notAfter: string, renewAfter: string): number {
    const windowDays = Math.floor((Date.parse(notAfter) - Date.parse(renewAfter)) / 86_400_000);
    return Math.max(1, windowDays - scheduleDays - 1);
}
