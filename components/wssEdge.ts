// The WSS edge on AWS as one component: the edge's plan (plan/edgePlan.ts), placed with Pulumi
// resources. Reads top to bottom, and data flows one way: settings → network → release channel →
// PKI → proxies (and their load balancer) → backends → the plan on AWS's facts (the proxy's size,
// the backends' addresses) → its release, rolled across the proxies → DNS → outputs.
//
// Two shapes, by proxyCount: 1 is one proxy VM behind an Elastic IP; 2 or more is a Network
// Load Balancer across availability zones in front of an Auto Scaling group of that many
// proxies. Nothing reaches a VM from outside but the edge's traffic: releases go through the
// stack's release store and Systems Manager (components/releaseChannel.ts).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { metricsEnvironment } from "../deploy/deployBundle";
import { proxyUserData } from "../host/proxyHost";
import { gateCredentialsKey, releaseFolders } from "../host/releaseChannel";
import { healthPath } from "../nginx/renderNginxConfig";
import { backendServerName } from "../pki/pkiSpec";
import { awsPlacement, backendEnvironmentOf, edgePkiPlan, healthGateCredentials, planEdge } from "../plan/edgePlan";
import { certificateSourceOf, edgeSettingsOf, type RawSettings, SettingsError, validateSettings } from "../settings/edgeSettings";
import type { SettingKey, StackSettings } from "../settings/settingsTable";
import { AcmeCertificate, renewalAlarmDaysLeft } from "./acmeCertificate";
import { BackendEndpoints } from "./backendEndpoints";
import { BackendFleet } from "./backendFleet";
import { EdgeDeploy } from "./edgeDeploy";
import { EdgeLoadBalancer } from "./edgeLoadBalancer";
import { EdgeMonitoring, edgeNamePrefix, metricsNamespace } from "./edgeMonitoring";
import { EdgeNetwork } from "./edgeNetwork";
import { EdgePki } from "./edgePki";
import { EdgeProxy } from "./edgeProxy";
import { FleetNotice } from "./fleetNotice";
import { backendMemoryMiB } from "./instanceDefaults";
import { InstanceRole } from "./instanceRole";
import { networkNeedsOf } from "./networkFacts";
import { ProxyGroup } from "./proxyGroup";
import { type CommandTargets, ReleaseChannel } from "./releaseChannel";

/** The settings that say where the edge goes; another program may pass its own resources' outputs. */
type PlacementKey = "vpcId" | "publicSubnetIds" | "privateSubnetIds" | "hostedZoneId";

/**
 * What a WssEdge takes: every key of the settings table (docs/configuration.md), each optional
 * with the table's default, and where it goes (your VPC, its subnets, your hosted zone), which
 * may be outputs of your own resources.
 */
export type WssEdgeArgs = { readonly [K in Exclude<SettingKey, PlacementKey>]?: StackSettings[K] } & {
    readonly vpcId?: pulumi.Input<string>;
    readonly publicSubnetIds?: pulumi.Input<readonly pulumi.Input<string>[]>;
    readonly privateSubnetIds?: pulumi.Input<readonly pulumi.Input<string>[]>;
    readonly hostedZoneId?: pulumi.Input<string>;
    /**
     * Serve IPv6 too (dual-stack): the balancer's nodes, or the proxy VM, get IPv6 addresses, and
     * the zone an AAAA record. Needs vpcId, and an IPv6 range in every public subnet (checked).
     * The stack program sets it when EC2 says the VPC and its public subnets have IPv6 ranges.
     */
    readonly ipv6?: boolean;
};

/** The stack outputs of the edge, by name (docs/aws.md lists what each is for). */
export interface WssEdgeOutputs {
    readonly endpoint: pulumi.Output<string>;
    readonly healthUrl: pulumi.Output<string>;
    readonly nginxConfig: pulumi.Output<string>;
    readonly proxyPublicIp?: pulumi.Output<string>;
    readonly proxyPublicIpv6?: pulumi.Output<string>;
    readonly loadBalancerDnsName?: pulumi.Output<string>;
    readonly proxyAutoScalingGroup?: pulumi.Output<string>;
    readonly proxyInstanceId?: pulumi.Output<string>;
    readonly backendPrivateIps: pulumi.Output<string[]>;
    readonly caCertificatePem: pulumi.Output<string>;
    readonly maxSockets: pulumi.Output<number | undefined>;
    readonly releaseBucket: pulumi.Output<string>;
    readonly edgeRelease: pulumi.Output<string>;
    readonly dashboardUrl: pulumi.Output<string>;
    readonly certificateExpiry: pulumi.Output<Record<string, string>>;
}

/**
 * The secure-WebSocket edge: NGINX proxies terminating TLS in front of a fleet of WebSocket
 * backends, deployed and rolled over Systems Manager. A program creates one per edge:
 *
 *     import { WssEdge } from "wss-edge/components";
 *     const edge = new WssEdge("chat", { vpcId: vpc.id, publicSubnetIds, privateSubnetIds, backendCount: 4 });
 *     export const endpoint = edge.outputs.endpoint;
 *
 * Its arguments are validated as the stack's settings are, and every problem is named before
 * any resource is registered.
 */
export class WssEdge extends pulumi.ComponentResource {
    readonly outputs: WssEdgeOutputs;
    /** The validated settings the edge was built from (defaults filled in). */
    readonly settings: StackSettings;

    constructor(name: string, args: WssEdgeArgs = {}, opts?: pulumi.ComponentResourceOptions) {
        // Checked before the component itself registers: bad arguments leave nothing behind.
        const settings = validateArgs(args, name);
        const ipv6 = args.ipv6 ?? false;
        if (ipv6 && args.vpcId === undefined)
            throw new SettingsError(`WssEdge ${name}`, [
                { key: "ipv6", value: "true", rule: "needs vpcId: the default VPC has no IPv6 ranges; give your VPC and its subnets" },
            ]);
        super("wss-edge:index:WssEdge", name, {}, opts);
        this.settings = settings;
        // The stack made these at its root before the component existed: the aliases keep them (docs/engine-rules.md).
        const formerly = (oldName?: string): pulumi.CustomResourceOptions => ({
            parent: this,
            aliases: [{ ...(oldName ? { name: oldName } : {}), parent: pulumi.rootStackResource }],
        });
        const certificate = certificateSourceOf({ ...settings, hostedZoneId: args.hostedZoneId });
        if (settings.certificate === "auto" && certificate === "stack-ca" && settings.domainName)
            pulumi.log.warn(
                `${name}: ${settings.domainName} is served with a certificate of the stack's own CA, which browsers do not trust: set hostedZoneId for one from Let's Encrypt (certificate acme), or certificate stack-ca to say this is meant`,
            );
        // One certificate for the whole edge, however many proxies: the CA's issuance limits are per name.
        const acmeCertificate =
            certificate === "acme"
                ? new AcmeCertificate(
                      `${name}-acme`,
                      {
                          // biome-ignore lint/style/noNonNullAssertion: validateArgs requires both with certificate acme.
                          domainName: settings.domainName!,
                          // biome-ignore lint/style/noNonNullAssertion: as above.
                          hostedZoneId: args.hostedZoneId!,
                          directoryUrl: settings.acmeDirectory,
                      },
                      { parent: this },
                  )
                : undefined;
        const userCertificate = acmeCertificate
            ? {
                  certificatePem: acmeCertificate.certificateChainPem,
                  privateKeyPem: acmeCertificate.privateKeyPem,
                  notAfter: acmeCertificate.notAfter,
              }
            : settings.tlsCertificate && settings.tlsPrivateKey
              ? { certificatePem: settings.tlsCertificate, privateKeyPem: settings.tlsPrivateKey }
              : undefined;

        const needs = networkNeedsOf(settings, ipv6);
        const { loadBalanced, endpoints } = needs;
        const network = new EdgeNetwork(
            name,
            {
                allowedCidrs: settings.allowedCidrs,
                httpRedirect: settings.httpRedirect,
                backendPort: settings.backendPort,
                placement:
                    args.vpcId === undefined
                        ? undefined
                        : pulumi.output({
                              vpcId: args.vpcId,
                              publicSubnetIds: args.publicSubnetIds ?? [],
                              privateSubnetIds: args.privateSubnetIds ?? [],
                          }),
                needs,
            },
            formerly(),
        );
        const channel = new ReleaseChannel(`${name}-releases`, { backendServerName }, formerly());
        const region = channel.region;
        // What every proxy and backend is told to send its metrics with (deploy/edge-metrics.sh).
        const metricsEnv = region.apply((r) => metricsEnvironment({ namespace: metricsNamespace, stack: edgeNamePrefix(name), region: r }));

        // Allocated first so that, without a domain name, the edge certificate can name the address.
        const address = loadBalanced
            ? undefined
            : new aws.ec2.Eip(name, { domain: "vpc", tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}` } }, formerly());
        const publicPorts = [443, ...(settings.httpRedirect ? [80] : [])];
        const balancer = loadBalanced
            ? new EdgeLoadBalancer(
                  name,
                  {
                      vpcId: network.vpcId,
                      subnetIds: network.publicSubnetIds,
                      // biome-ignore lint/style/noNonNullAssertion: EdgeNetwork creates it when loadBalanced.
                      securityGroupId: network.loadBalancerSecurityGroup!.id,
                      ports: publicPorts,
                      drainSeconds: settings.drainTimeoutSeconds,
                      dualStack: ipv6,
                  },
                  formerly(),
              )
            : undefined;

        // The proxies' identity: Systems Manager, and the edge's folder of the store (its releases, and the gates' credentials).
        const proxyRole = new InstanceRole(
            `${name}-proxy`,
            { statements: channel.readStatements([`${releaseFolders.edge}/*`]), metricsNamespace },
            formerly(),
        );
        const userData = pulumi
            .all([channel.store, region])
            .apply(([store, ssmAgentRegion]) => proxyUserData({ store, ssmAgentRegion, platform: settings.proxyPlatform }));
        const proxy = balancer
            ? new ProxyGroup(
                  `${name}-proxies`,
                  {
                      instanceType: settings.proxyInstanceType,
                      platform: settings.proxyPlatform,
                      count: settings.proxyCount,
                      subnetIds: network.publicSubnetIds,
                      securityGroupId: network.proxySecurityGroup.id,
                      instanceProfileArn: proxyRole.profile.arn,
                      userData,
                      publicAddress: network.inYourVpc,
                      targetGroupArns: balancer.targetGroups.map((group) => group.arn),
                      region,
                  },
                  { ...formerly(), dependsOn: [proxyRole] },
              )
            : new EdgeProxy(
                  `${name}-proxy`,
                  {
                      instanceType: settings.proxyInstanceType,
                      platform: settings.proxyPlatform,
                      subnetId: network.publicSubnetIds.apply((ids) => ids[0]),
                      securityGroupId: network.proxySecurityGroup.id,
                      instanceProfile: proxyRole.profile.name,
                      userData,
                      ipv6,
                      publicAddress: network.inYourVpc,
                  },
                  { ...formerly(), dependsOn: [proxyRole] },
              );
        const proxies: CommandTargets =
            proxy instanceof ProxyGroup ? { autoScalingGroup: proxy.group.name } : { instanceIds: [proxy.instance.id] };

        const pki = new EdgePki(
            name,
            {
                spec: edgePkiPlan(settings, {
                    dnsNames: settings.domainName ? [settings.domainName] : [],
                    ipAddresses: [],
                    certificate,
                }),
                edgeIpAddresses: address ? [address.publicIp] : [],
                edgeDnsNames: balancer && !settings.domainName ? [balancer.dnsName] : [],
                userCertificate,
            },
            formerly(),
        );

        // What each backend's health gate on the proxies presents: readable by the proxies' role only.
        const gateCredentials = channel.put(
            `${name}-gate-credentials`,
            gateCredentialsKey,
            pulumi
                .all([pki.caCertificatePem, pki.proxyClientCertificate.certificatePem, pki.proxyClientCertificate.privateKeyPem])
                .apply(([caCertificatePem, certificatePem, privateKeyPem]) =>
                    healthGateCredentials({ caCertificatePem, proxyClientCertificate: { certificatePem, privateKeyPem } }),
                ),
        );

        // In private subnets with endpoints, the backends reach AWS through them before their first boot's pulls.
        const backendEndpoints = endpoints
            ? new BackendEndpoints(
                  `${name}-endpoints`,
                  {
                      vpcId: network.vpcId,
                      subnetIds: network.privateSubnetIds,
                      routeTableIds: network.privateRouteTableIds,
                      vpcCidrs: network.vpcCidrs,
                      region,
                      edgeName: name,
                  },
                  { parent: this },
              )
            : undefined;

        const backendMemory = backendMemoryMiB(settings.backendInstanceType);
        const backends = new BackendFleet(
            `${name}-backends`,
            {
                instanceType: settings.backendInstanceType,
                port: settings.backendPort,
                subnetIds: network.privateSubnetIds,
                publicAddress: !network.inYourVpc,
                securityGroupId: network.backendSecurityGroup.id,
                certificates: pki.backendCertificates,
                caCertificatePem: pki.caCertificatePem,
                image: settings.backendImage,
                environment: backendMemory.apply((memoryMiB) => backendEnvironmentOf(settings, { memoryMiB })),
                channel,
                proxies,
                gateCredentials,
                after: backendEndpoints ? [backendEndpoints] : [],
                metrics: { environment: metricsEnv, namespace: metricsNamespace },
            },
            formerly("backends"),
        );

        const publicName: pulumi.Input<string> = settings.domainName ?? balancer?.dnsName ?? (address as aws.ec2.Eip).publicIp;
        /** The edge's plan, placed on AWS: every proxy runs its config, the same upstream and hashing, so a client lands on the same backend through any of them. */
        const plan = pulumi
            .all([pulumi.all(backends.privateIps), publicName, proxy.memoryMiB, proxy.vcpus, network.vpcCidrs, backendMemory])
            .apply(([backendAddresses, publicName, memoryMiB, vcpus, vpcCidrs, backendMemoryMiB]) =>
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
                        balancerRanges: loadBalanced ? vpcCidrs : undefined,
                    }),
                ),
            );

        // One proxy at a time, once every backend has passed its gate; each proxy's deploy ends with
        // NGINX answering its health check, so the balancer always has proxies serving.
        const edgeDeploy = new EdgeDeploy(
            `${name}-deploy`,
            {
                channel,
                proxies,
                plan,
                certificates: pki,
                metricsEnvironment: metricsEnv,
                after: backends.backends.map((b) => b.healthGate),
            },
            formerly(),
        );

        // Then each backend learns the fleet the proxies now route by, and moves the sockets whose key hashes elsewhere.
        new FleetNotice(
            `${name}-backend-fleet`,
            { channel, backends: backends.backends, port: settings.backendPort, plan, after: [edgeDeploy.deploy] },
            formerly("backend-fleet"),
        );

        // The single VM's address moves to a VM only once it serves: after the deploy that checked it.
        // A replacement VM takes it from the old one (allowReassociation) before the old is deleted.
        const association =
            address && proxy instanceof EdgeProxy
                ? new aws.ec2.EipAssociation(
                      `${name}-proxy`,
                      { allocationId: address.allocationId, instanceId: proxy.instance.id, allowReassociation: true },
                      { ...formerly(), dependsOn: [edgeDeploy.deploy] },
                  )
                : undefined;

        // The single VM's IPv6 address is its own (no Elastic IP holds one): a replacement VM brings a new one.
        const proxyIpv6 = ipv6 && proxy instanceof EdgeProxy ? proxy.instance.ipv6Addresses.apply((addresses) => addresses[0]) : undefined;

        // The name clients dial, in your zone: published once the edge serves there.
        const zoneId = args.hostedZoneId;
        const domainName = settings.domainName;
        if (zoneId !== undefined && domainName !== undefined) {
            const record = (suffix: string, type: "A" | "AAAA", target: pulumi.Input<string>) =>
                new aws.route53.Record(
                    `${name}-dns${suffix}`,
                    {
                        zoneId,
                        name: domainName,
                        type,
                        // A record of that name made by hand before is taken over, not an error.
                        allowOverwrite: true,
                        ...(balancer
                            ? { aliases: [{ name: balancer.dnsName, zoneId: balancer.loadBalancer.zoneId, evaluateTargetHealth: true }] }
                            : { ttl: 60, records: [target] }),
                    },
                    { parent: this, dependsOn: association ? [association] : [edgeDeploy.deploy] },
                );
            record("", "A", address?.publicIp ?? "");
            if (ipv6) record("-ipv6", "AAAA", proxyIpv6 ?? "");
        }

        const monitoring = new EdgeMonitoring(
            name,
            {
                instances: [
                    ...(proxy instanceof EdgeProxy ? [{ role: "proxy", instance: proxy.instance }] : []),
                    ...backends.backends.map((b) => ({ role: b.name, instance: b.instance })),
                ],
                targetGroups: balancer?.targetGroups.map((targetGroup, i) => ({
                    port: publicPorts[i],
                    targetGroup,
                    loadBalancer: balancer.loadBalancer,
                })),
                acmeCertificate: acmeCertificate && {
                    acmCertificateArn: acmeCertificate.acmCertificateArn,
                    alarmDaysLeft: pulumi
                        .all([acmeCertificate.notAfter, acmeCertificate.renewAfter])
                        .apply(([notAfter, renewAfter]) => renewalAlarmDaysLeft(notAfter, renewAfter)),
                },
                capacity: {
                    proxyMaxSockets: plan.maxSockets,
                    proxyCount: settings.proxyCount,
                    backendMaxSockets: backendMemory.apply((memoryMiB) =>
                        Number(backendEnvironmentOf(settings, { memoryMiB }).MAX_SOCKETS),
                    ),
                },
                alarmEmail: settings.alarmEmail,
            },
            formerly(),
        );

        this.outputs = {
            endpoint: pulumi.interpolate`wss://${publicName}/`,
            healthUrl: pulumi.interpolate`https://${publicName}${healthPath}`,
            nginxConfig: plan.nginxConfig,
            proxyPublicIp: address && association ? pulumi.all([address.publicIp, association.id]).apply(([ip]) => ip) : undefined,
            proxyPublicIpv6: proxyIpv6 && association ? pulumi.all([proxyIpv6, association.id]).apply(([ip]) => ip) : undefined,
            loadBalancerDnsName: balancer?.dnsName,
            proxyAutoScalingGroup: proxy instanceof ProxyGroup ? proxy.group.name : undefined,
            proxyInstanceId: proxy instanceof EdgeProxy ? proxy.instance.id : undefined,
            backendPrivateIps: pulumi.all(backends.privateIps),
            caCertificatePem: pki.caCertificatePem,
            maxSockets: plan.maxSockets,
            releaseBucket: channel.bucket.bucket,
            edgeRelease: edgeDeploy.releaseId,
            dashboardUrl: monitoring.dashboardUrl,
            certificateExpiry: pki.expiry,
        };
        this.registerOutputs(this.outputs);
    }
}

/**
 * The arguments checked by the stack's own rules (settings/edgeSettings.ts): typed values are
 * written as the stack configuration holds them and read back, so a component and a stack
 * refuse the same values with the same words. Placement given as outputs of other resources
 * is checked against EC2 once known (EdgeNetwork).
 */
function validateArgs(args: WssEdgeArgs, name: string): StackSettings {
    const raw: RawSettings = {};
    const unknown = new Set<SettingKey>();
    for (const [key, value] of Object.entries(args) as [SettingKey, unknown][]) {
        // ipv6 is a fact of the network, not a setting: EdgeNetwork checks it against the subnets.
        if (value === undefined || (key as string) === "ipv6") continue;
        if (pulumi.Output.isInstance(value) || (Array.isArray(value) && value.some((v) => pulumi.Output.isInstance(v)))) unknown.add(key);
        else raw[key] = typeof value === "string" ? value : JSON.stringify(value);
    }
    return validateSettings(raw, `WssEdge ${name}`, unknown);
}
