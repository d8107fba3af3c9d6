// The WSS edge on AWS: the edge's plan (plan/edgePlan.ts), placed with Pulumi resources. Reads
// top to bottom, and data flows one way: settings → network → release channel → PKI → proxies
// (and their load balancer) → backends → the plan on AWS's facts (the proxy's size, the
// backends' addresses) → its release, rolled across the proxies → outputs.
//
// Two shapes, by proxyCount: 1 is one proxy VM behind an Elastic IP; 2 or more is a Network
// Load Balancer across availability zones in front of an Auto Scaling group of that many
// proxies. Nothing reaches a VM from outside but the edge's traffic: releases go through the
// stack's release store and Systems Manager (components/releaseChannel.ts).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { BackendFleet } from "./components/backendFleet";
import { EdgeDeploy } from "./components/edgeDeploy";
import { EdgeLoadBalancer } from "./components/edgeLoadBalancer";
import { EdgeMonitoring } from "./components/edgeMonitoring";
import { EdgeNetwork } from "./components/edgeNetwork";
import { EdgePki } from "./components/edgePki";
import { EdgeProxy } from "./components/edgeProxy";
import { FleetNotice } from "./components/fleetNotice";
import { backendMemoryMiB } from "./components/instanceDefaults";
import { InstanceRole } from "./components/instanceRole";
import { ProxyGroup } from "./components/proxyGroup";
import { type CommandTargets, ReleaseChannel } from "./components/releaseChannel";
import { proxyUserData } from "./host/proxyHost";
import { gateCredentialsKey, releaseFolders } from "./host/releaseChannel";
import { healthPath } from "./nginx/renderNginxConfig";
import { backendServerName } from "./pki/pkiSpec";
import { awsPlacement, backendEnvironmentOf, edgePkiPlan, healthGateCredentials, planEdge } from "./plan/edgePlan";
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
    httpRedirect: settings.httpRedirect,
    backendPort: settings.backendPort,
    loadBalanced,
});
const channel = new ReleaseChannel("edge-releases", { backendServerName });
const region = channel.region;

// Allocated first so that, without a domain name, the edge certificate can name the address.
const address = loadBalanced
    ? undefined
    : new aws.ec2.Eip("edge", { domain: "vpc", tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}` } });
const publicPorts = [443, ...(settings.httpRedirect ? [80] : [])];
const balancer = loadBalanced
    ? new EdgeLoadBalancer("edge", {
          vpcId: network.vpcId,
          subnetIds: network.subnetIds,
          // biome-ignore lint/style/noNonNullAssertion: EdgeNetwork creates it when loadBalanced.
          securityGroupId: network.loadBalancerSecurityGroup!.id,
          ports: publicPorts,
          drainSeconds: settings.drainTimeoutSeconds,
      })
    : undefined;

// The proxies' identity: Systems Manager, and the edge's folder of the store (its releases, and the gates' credentials).
const proxyRole = new InstanceRole("edge-proxy", { statements: channel.readStatements([`${releaseFolders.edge}/*`]) });
const userData = pulumi.all([channel.store, region]).apply(([store, ssmAgentRegion]) => proxyUserData({ store, ssmAgentRegion }));
const proxy = balancer
    ? new ProxyGroup(
          "edge-proxies",
          {
              instanceType: settings.proxyInstanceType,
              count: settings.proxyCount,
              subnetIds: network.subnetIds,
              securityGroupId: network.proxySecurityGroup.id,
              instanceProfileArn: proxyRole.profile.arn,
              userData,
              targetGroupArns: balancer.targetGroups.map((group) => group.arn),
          },
          { dependsOn: [proxyRole] },
      )
    : new EdgeProxy(
          "edge-proxy",
          {
              instanceType: settings.proxyInstanceType,
              subnetId: network.subnetIds.apply((ids) => ids[0]),
              securityGroupId: network.proxySecurityGroup.id,
              instanceProfile: proxyRole.profile.name,
              userData,
          },
          { dependsOn: [proxyRole] },
      );
const proxies: CommandTargets = proxy instanceof ProxyGroup ? { autoScalingGroup: proxy.group.name } : { instanceIds: [proxy.instance.id] };

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

// What each backend's health gate on the proxies presents: readable by the proxies' role only.
const gateCredentials = channel.put(
    "edge-gate-credentials",
    gateCredentialsKey,
    pulumi
        .all([pki.caCertificatePem, pki.proxyClientCertificate.certificatePem, pki.proxyClientCertificate.privateKeyPem])
        .apply(([caCertificatePem, certificatePem, privateKeyPem]) =>
            healthGateCredentials({ caCertificatePem, proxyClientCertificate: { certificatePem, privateKeyPem } }),
        ),
);

const backendMemory = backendMemoryMiB(settings.backendInstanceType);
const backends = new BackendFleet("backends", {
    instanceType: settings.backendInstanceType,
    port: settings.backendPort,
    subnetIds: network.subnetIds,
    securityGroupId: network.backendSecurityGroup.id,
    certificates: pki.backendCertificates,
    caCertificatePem: pki.caCertificatePem,
    image: settings.backendImage,
    environment: backendMemory.apply((memoryMiB) => backendEnvironmentOf(settings, { memoryMiB })),
    channel,
    proxies,
    gateCredentials,
});

const publicName: pulumi.Input<string> = settings.domainName ?? balancer?.dnsName ?? (address as aws.ec2.Eip).publicIp;
/** The edge's plan, placed on AWS: every proxy runs its config, the same upstream and hashing, so a client lands on the same backend through any of them. */
const plan = pulumi
    .all([pulumi.all(backends.privateIps), publicName, proxy.memoryMiB, proxy.vcpus, network.vpcCidr, backendMemory])
    .apply(([backendAddresses, publicName, memoryMiB, vcpus, vpcCidr, backendMemoryMiB]) =>
        planEdge(
            edgeSettingsOf(settings),
            awsPlacement({
                memoryMiB,
                vcpus,
                backendMemoryMiB,
                publicName,
                backendAddresses,
                backendPort: settings.backendPort,
                // Behind the balancer, NGINX believes PROXY protocol headers from the VPC only: the balancer's nodes.
                balancerRange: loadBalanced ? vpcCidr : undefined,
            }),
        ),
    );
export const nginxConfig = plan.nginxConfig;

// One proxy at a time, once every backend has passed its gate; each proxy's deploy ends with
// NGINX answering its health check, so the balancer always has proxies serving.
const edgeDeploy = new EdgeDeploy("edge-deploy", {
    channel,
    proxies,
    plan,
    certificates: pki,
    after: backends.backends.map((b) => b.healthGate),
});

// Then each backend learns the fleet the proxies now route by, and moves the sockets whose key hashes elsewhere.
new FleetNotice("backend-fleet", {
    channel,
    backends: backends.backends,
    port: settings.backendPort,
    plan,
    after: [edgeDeploy.deploy],
});

// The single VM's address moves to a VM only once it serves: after the deploy that checked it.
// A replacement VM takes it from the old one (allowReassociation) before the old is deleted.
const association =
    address && proxy instanceof EdgeProxy
        ? new aws.ec2.EipAssociation(
              "edge-proxy",
              { allocationId: address.allocationId, instanceId: proxy.instance.id, allowReassociation: true },
              { dependsOn: [edgeDeploy.deploy] },
          )
        : undefined;

const monitoring = new EdgeMonitoring("edge", {
    instances: [
        ...(proxy instanceof EdgeProxy ? [{ role: "proxy", instance: proxy.instance }] : []),
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
/** The single VM's Elastic IP (once it is associated with a VM that serves). */
export const proxyPublicIp = address && association ? pulumi.all([address.publicIp, association.id]).apply(([ip]) => ip) : undefined;
/** The Network Load Balancer's DNS name (point domainName at it), when proxyCount is 2 or more. */
export const loadBalancerDnsName = balancer?.dnsName;
/** The load-balanced proxies' Auto Scaling group. */
export const proxyAutoScalingGroup = proxy instanceof ProxyGroup ? proxy.group.name : undefined;
/** The single proxy VM's instance ID (for Session Manager: aws ssm start-session --target <id>). */
export const proxyInstanceId = proxy instanceof EdgeProxy ? proxy.instance.id : undefined;
export const backendPrivateIps = pulumi.all(backends.privateIps);
export const caCertificatePem = pki.caCertificatePem;
/** WebSockets the proxy admits at once before answering 503: what its memory holds, or the maxSockets setting if lower. */
export const maxSockets = plan.maxSockets;
/** The release store's bucket, and the edge release the proxies serve (and new proxies apply as they boot). */
export const releaseBucket = channel.bucket.bucket;
export const edgeRelease = edgeDeploy.releaseId;
/** The CloudWatch dashboard of the edge's instances. */
export const dashboardUrl = monitoring.dashboardUrl;
/** When each certificate expires (RFC 3339); a `pulumi up` in the last 30 days of a leaf renews it. */
export const certificateExpiry = pki.expiry;
