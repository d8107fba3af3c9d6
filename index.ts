// The WSS edge on AWS. Reads top to bottom, and data flows one way:
// settings → network → PKI → proxy VM → backends → rendered NGINX config → deploy → outputs.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { BackendFleet } from "./components/backendFleet";
import { EdgeDeploy } from "./components/edgeDeploy";
import { EdgeMonitoring } from "./components/edgeMonitoring";
import { EdgeNetwork } from "./components/edgeNetwork";
import { EdgePki } from "./components/edgePki";
import { EdgeProxy } from "./components/edgeProxy";
import { awsProxyHost, backendPingIntervalSeconds, edgeConfigSpec, socketCeiling } from "./nginx/edgeConfigFromSettings";
import { healthPath, renderNginxConfig } from "./nginx/renderNginxConfig";
import { edgePkiSpec } from "./pki/pkiSpec";
import { loadStackSettings } from "./settings/pulumiSettings";

// Throws before any resource is registered when a setting is invalid.
const settings = loadStackSettings();
const userCertificate =
    settings.tlsCertificate && settings.tlsPrivateKey
        ? { certificatePem: settings.tlsCertificate, privateKeyPem: settings.tlsPrivateKey }
        : undefined;

const network = new EdgeNetwork("edge", {
    allowedCidrs: settings.allowedCidrs,
    adminCidrs: settings.adminCidrs,
    httpRedirect: settings.httpRedirect,
    backendPort: settings.backendPort,
});

// Allocated first so that, without a domain name, the edge certificate can name the address.
const address = new aws.ec2.Eip("edge", { domain: "vpc", tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}` } });

const pki = new EdgePki("edge", {
    spec: edgePkiSpec({
        edgeDnsNames: settings.domainName ? [settings.domainName] : [],
        edgeIpAddresses: [],
        backendCount: settings.backendCount,
        userSuppliedEdgeCertificate: userCertificate !== undefined,
    }),
    edgeIpAddresses: [address.publicIp],
    userCertificate,
});

const proxy = new EdgeProxy("edge-proxy", {
    instanceType: settings.proxyInstanceType,
    subnetId: network.subnetIds.apply((ids) => ids[0]),
    securityGroupId: network.proxySecurityGroup.id,
    address,
});

const backends = new BackendFleet("backends", {
    instanceType: settings.backendInstanceType,
    port: settings.backendPort,
    subnetIds: network.subnetIds,
    securityGroupId: network.backendSecurityGroup.id,
    certificates: pki.backendCertificates,
    caCertificatePem: pki.caCertificatePem,
    proxyClientCertificate: pki.proxyClientCertificate,
    image: settings.backendImage,
    pingIntervalSeconds: backendPingIntervalSeconds(settings),
    proxy,
});

const publicName = settings.domainName ?? address.publicIp;
const capacity = pulumi
    .all([proxy.memoryMiB, proxy.vcpus])
    .apply(([memoryMiB, vcpus]) => ({ memoryMiB, vcpus, backendCount: settings.backendCount }));
const proxyHostProfile = capacity.apply(awsProxyHost);
export const nginxConfig = pulumi.all([pulumi.all(backends.privateIps), publicName, proxyHostProfile]).apply(([ips, name, host]) =>
    renderNginxConfig(
        edgeConfigSpec(
            settings,
            ips.map((ip) => ({ address: ip, port: settings.backendPort })),
            host,
            [name],
        ),
    ),
);

new EdgeDeploy("edge-deploy", {
    proxy,
    nginxConfig,
    tls: {
        certificateChainPem: pki.edgeCertificateChainPem,
        privateKeyPem: pki.edgePrivateKeyPem,
        backendCaPem: pki.caCertificatePem,
        proxyClientCertificatePem: pki.proxyClientCertificate.certificatePem,
        proxyClientKeyPem: pki.proxyClientCertificate.privateKeyPem,
    },
    backendHealthAgent: settings.activeHealthChecks,
    after: backends.backends.map((b) => b.healthGate),
});

const monitoring = new EdgeMonitoring("edge", {
    instances: [{ role: "proxy", instance: proxy.instance }, ...backends.backends.map((b) => ({ role: b.name, instance: b.instance }))],
    alarmEmail: settings.alarmEmail,
});

export const endpoint = pulumi.interpolate`wss://${publicName}/`;
export const healthUrl = pulumi.interpolate`https://${publicName}${healthPath}`;
export const proxyPublicIp = proxy.publicIp;
export const backendPrivateIps = pulumi.all(backends.privateIps);
export const caCertificatePem = pki.caCertificatePem;
/** WebSockets the proxy admits at once before answering 503: what its memory holds, or the maxSockets setting if lower. */
export const maxSockets = proxyHostProfile.apply((host) => socketCeiling(settings, host));
/** The CloudWatch dashboard of the edge's instances. */
export const dashboardUrl = monitoring.dashboardUrl;
/** When each certificate expires (RFC 3339); a `pulumi up` in the last 30 days of a leaf renews it. */
export const certificateExpiry = pki.expiry;
