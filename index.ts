// The WSS edge on AWS: the edge's plan (plan/edgePlan.ts), placed with Pulumi resources. Reads
// top to bottom, and data flows one way: settings → network → PKI → proxy VMs (and their load
// balancer) → backends → the plan on AWS's facts (the proxy's size, the backends' addresses) →
// its release deployed, one proxy at a time → outputs.
//
// Two shapes, by proxyCount: 1 is one proxy VM behind an Elastic IP; 2 or more is a Network
// Load Balancer across availability zones in front of that many proxy VMs.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { BackendFleet } from "./components/backendFleet";
import { EdgeDeploy } from "./components/edgeDeploy";
import { EdgeLoadBalancer } from "./components/edgeLoadBalancer";
import { EdgeMonitoring } from "./components/edgeMonitoring";
import { EdgeNetwork } from "./components/edgeNetwork";
import { EdgePki } from "./components/edgePki";
import { EdgeProxy } from "./components/edgeProxy";
import { healthPath } from "./nginx/renderNginxConfig";
import { awsPlacement, backendPingIntervalSeconds, edgePkiPlan, planEdge } from "./plan/edgePlan";
import { edgeSettingsOf } from "./settings/edgeSettings";
import { loadStackSettings } from "./settings/pulumiSettings";

// Throws before any resource is registered when a setting is invalid.
const settings = loadStackSettings();
const userCertificate =
    settings.tlsCertificate && settings.tlsPrivateKey
        ? { certificatePem: settings.tlsCertificate, privateKeyPem: settings.tlsPrivateKey }
        : undefined;

const loadBalanced = settings.proxyCount > 1;
const network = new EdgeNetwork("edge", {
    allowedCidrs: settings.allowedCidrs,
    adminCidrs: settings.adminCidrs,
    httpRedirect: settings.httpRedirect,
    backendPort: settings.backendPort,
    loadBalanced,
});

// The first proxy keeps its name in both shapes, so growing to a load-balanced edge adds proxies
// beside it instead of replacing it. Proxies go round the availability zones.
const proxies = Array.from({ length: settings.proxyCount }, (_, i) => i).map((i) => ({
    name: i === 0 ? "edge-proxy" : `edge-proxy-${i + 1}`,
    role: loadBalanced ? `proxy-${i + 1}` : "proxy",
    subnetId: network.subnetIds.apply((ids) => ids[i % ids.length]),
}));

// Allocated first so that, without a domain name, the edge certificate can name the address.
const address = loadBalanced
    ? undefined
    : new aws.ec2.Eip("edge", { domain: "vpc", tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}` } });

const proxyVms = proxies.map(
    ({ name, role, subnetId }) =>
        new EdgeProxy(name, {
            instanceType: settings.proxyInstanceType,
            subnetId,
            securityGroupId: network.proxySecurityGroup.id,
            address,
            role,
        }),
);
const proxy = proxyVms[0];
const publicPorts = [443, ...(settings.httpRedirect ? [80] : [])];
const balancer = loadBalanced
    ? new EdgeLoadBalancer("edge", {
          vpcId: network.vpcId,
          subnetIds: network.subnetIds,
          // biome-ignore lint/style/noNonNullAssertion: EdgeNetwork creates it when loadBalanced.
          securityGroupId: network.loadBalancerSecurityGroup!.id,
          ports: publicPorts,
          proxies: proxyVms,
          drainSeconds: settings.drainTimeoutSeconds,
      })
    : undefined;

const pki = new EdgePki("edge", {
    spec: edgePkiPlan(settings, {
        dnsNames: settings.domainName ? [settings.domainName] : [],
        ipAddresses: [],
        userSuppliedCertificate: userCertificate !== undefined,
    }),
    edgeIpAddresses: address ? [address.publicIp] : [],
    edgeDnsNames: balancer && !settings.domainName ? [balancer.dnsName] : [],
    userCertificate,
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

const publicName: pulumi.Input<string> = settings.domainName ?? balancer?.dnsName ?? (address as aws.ec2.Eip).publicIp;
/** The edge's plan, placed on AWS: every proxy runs its config, the same upstream and hashing, so a client lands on the same backend through any of them. */
const plan = pulumi
    .all([pulumi.all(backends.privateIps), publicName, proxy.memoryMiB, proxy.vcpus, network.vpcCidr])
    .apply(([backendAddresses, publicName, memoryMiB, vcpus, vpcCidr]) =>
        planEdge(
            edgeSettingsOf(settings),
            awsPlacement({
                memoryMiB,
                vcpus,
                publicName,
                backendAddresses,
                backendPort: settings.backendPort,
                // Behind the balancer, NGINX believes PROXY protocol headers from the VPC only: the balancer's nodes.
                balancerRange: loadBalanced ? vpcCidr : undefined,
            }),
        ),
    );
export const nginxConfig = plan.nginxConfig;

// One proxy at a time: each deploy starts once the previous proxy has reloaded and answers its
// health check (the deploy script's last step), so the balancer always has proxies serving.
proxyVms.reduce<EdgeDeploy | undefined>(
    (previous, vm, i) =>
        new EdgeDeploy(i === 0 ? "edge-deploy" : `edge-deploy-${i + 1}`, {
            proxy: vm,
            plan,
            certificates: pki,
            after: previous ? [previous.deploy] : backends.backends.map((b) => b.healthGate),
        }),
    undefined,
);

const monitoring = new EdgeMonitoring("edge", {
    instances: [
        ...proxyVms.map((vm, i) => ({ role: proxies[i].role, instance: vm.instance })),
        ...backends.backends.map((b) => ({ role: b.name, instance: b.instance })),
    ],
    targetGroups: balancer?.targetGroups.map((targetGroup, i) => ({
        port: publicPorts[i],
        targetGroup,
        loadBalancer: balancer.loadBalancer,
    })),
    alarmEmail: settings.alarmEmail,
});

export const endpoint = pulumi.interpolate`wss://${publicName}/`;
export const healthUrl = pulumi.interpolate`https://${publicName}${healthPath}`;
/** The single VM's Elastic IP; behind a load balancer, the first proxy's own address (for SSH). */
export const proxyPublicIp = proxy.publicIp;
/** Every proxy VM's public address, for SSH from adminCidrs. */
export const proxyPublicIps = pulumi.all(proxyVms.map((vm) => vm.publicIp));
/** The Network Load Balancer's DNS name (point domainName at it), when proxyCount is 2 or more. */
export const loadBalancerDnsName = balancer?.dnsName;
export const backendPrivateIps = pulumi.all(backends.privateIps);
export const caCertificatePem = pki.caCertificatePem;
/** WebSockets the proxy admits at once before answering 503: what its memory holds, or the maxSockets setting if lower. */
export const maxSockets = plan.maxSockets;
/** The CloudWatch dashboard of the edge's instances. */
export const dashboardUrl = monitoring.dashboardUrl;
/** When each certificate expires (RFC 3339); a `pulumi up` in the last 30 days of a leaf renews it. */
export const certificateExpiry = pki.expiry;
