import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { ProxyPlatform } from "../settings/settingsTable";
import { hardenedInstanceSettings, proxyMachine } from "./instanceDefaults";
import { packageFile } from "./packageFiles";

export interface ProxyGroupArgs {
    readonly instanceType: string;
    /** How many proxies serve at once (proxyCount). */
    readonly count: number;
    /** One subnet per availability zone: the group spreads the proxies over them. */
    readonly subnetIds: pulumi.Input<string[]>;
    readonly securityGroupId: pulumi.Input<string>;
    readonly instanceProfileArn: pulumi.Input<string>;
    /** First boot: NGINX, and the store's current edge release (host/proxyHost.ts). */
    readonly userData: pulumi.Input<string>;
    /** Ask for a public IPv4 address at launch (your subnets may not assign one by default): see EdgeProxyArgs. */
    readonly publicAddress: boolean;
    /** The balancer's target groups the proxies register in. */
    readonly targetGroupArns: pulumi.Input<string>[];
    /** The proxies' Debian release (proxyPlatform). */
    readonly platform: ProxyPlatform;
    /** Where the group is, for the command that waits for its refreshes. */
    readonly region: pulumi.Input<string>;
}

/** How long a new proxy has to boot, install and apply the current release before the balancer's health check counts. */
export const proxyBootGraceSeconds = 600;
/** After a new proxy passes, how long the refresh waits before it counts it as serving. */
export const proxyWarmupSeconds = 60;

/**
 * The load-balanced edge's proxies: an Auto Scaling group of `count` Debian 12 VMs from one
 * launch template, registered in the balancer's target groups. The balancer's health check is
 * the group's: a proxy it finds unhealthy is replaced, and the new one serves the store's
 * current release from its first boot, with no push. A change to the template (image, instance
 * type, user data) starts an instance refresh that launches each new proxy before it
 * terminates an old one (100% healthy minimum, 200% maximum), so the edge never has fewer
 * serving proxies than `count`; a leaving proxy is deregistered first and keeps its sockets for
 * the target groups' deregistration delay. The provider starts the refresh and does not wait
 * for it (terraform-provider-aws, instance_refresh: "This resource does not wait for the
 * instance refresh to complete"), so `refresh` does (deploy/await-refresh.sh): `pulumi up`
 * prints the refresh's progress and the drains, and fails with AWS's reason when a refresh
 * fails or rolls back.
 */
export class ProxyGroup extends pulumi.ComponentResource {
    readonly launchTemplate: aws.ec2.LaunchTemplate;
    readonly group: aws.autoscaling.Group;
    /** Waits for the instance refresh a new template version starts. */
    readonly refresh: command.local.Command;
    readonly memoryMiB: pulumi.Output<number>;
    readonly vcpus: pulumi.Output<number>;

    constructor(name: string, args: ProxyGroupArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:proxy:ProxyGroup", name, {}, opts);
        const machine = proxyMachine(args.instanceType, args.platform, this);
        this.memoryMiB = machine.memoryMiB;
        this.vcpus = machine.vcpus;
        const { rootBlockDevice, metadataOptions } = hardenedInstanceSettings;
        const tags = { Name: `${pulumi.getProject()}-${pulumi.getStack()}-proxy`, Role: "wss-edge-proxy" };

        this.launchTemplate = new aws.ec2.LaunchTemplate(
            name,
            {
                imageId: machine.amiId,
                instanceType: args.instanceType,
                iamInstanceProfile: { arn: args.instanceProfileArn },
                // A launch template asks for a public address on its network interface, which then holds the security group too.
                ...(args.publicAddress
                    ? {
                          networkInterfaces: [
                              {
                                  deviceIndex: 0,
                                  associatePublicIpAddress: "true",
                                  securityGroups: [args.securityGroupId],
                                  deleteOnTermination: "true",
                              },
                          ],
                      }
                    : { vpcSecurityGroupIds: [args.securityGroupId] }),
                metadataOptions,
                monitoring: { enabled: true },
                blockDeviceMappings: [
                    {
                        deviceName: "/dev/xvda",
                        ebs: {
                            encrypted: String(rootBlockDevice.encrypted),
                            volumeType: rootBlockDevice.volumeType,
                            volumeSize: rootBlockDevice.volumeSize,
                            deleteOnTermination: String(rootBlockDevice.deleteOnTermination),
                        },
                    },
                ],
                userData: pulumi.output(args.userData).apply((text) => Buffer.from(text, "utf8").toString("base64")),
                tagSpecifications: [{ resourceType: "instance", tags }],
                updateDefaultVersion: true,
            },
            { parent: this },
        );

        this.group = new aws.autoscaling.Group(
            name,
            {
                minSize: args.count,
                maxSize: args.count,
                desiredCapacity: args.count,
                vpcZoneIdentifiers: args.subnetIds,
                // The template's version, not $Latest: a new version is what starts a refresh.
                launchTemplate: { id: this.launchTemplate.id, version: this.launchTemplate.latestVersion.apply(String) },
                targetGroupArns: args.targetGroupArns,
                healthCheckType: "ELB",
                healthCheckGracePeriod: proxyBootGraceSeconds,
                instanceRefresh: {
                    strategy: "Rolling",
                    preferences: {
                        minHealthyPercentage: 100,
                        maxHealthyPercentage: 200,
                        instanceWarmup: String(proxyWarmupSeconds),
                        skipMatching: true,
                        autoRollback: true,
                    },
                },
                // Until the first deploy no proxy passes the balancer's check: wait for InService only.
                waitForCapacityTimeout: "15m",
                tags: Object.entries(tags).map(([key, value]) => ({ key, value, propagateAtLaunch: true })),
            },
            { parent: this },
        );
        this.refresh = new command.local.Command(
            `${name}-refresh`,
            {
                create: `bash ${packageFile("deploy/await-refresh.sh")}`,
                environment: {
                    WSS_EDGE_REGION: args.region,
                    WSS_EDGE_TARGETS: pulumi.interpolate`asg:${this.group.name}`,
                    WSS_EDGE_TARGET_GROUPS: pulumi.all(args.targetGroupArns).apply((arns) => arns.join(" ")),
                },
                // A new template version is what starts a refresh; nothing else needs waiting for.
                triggers: [this.launchTemplate.latestVersion],
                logging: "stdoutAndStderr",
            },
            { parent: this, dependsOn: [this.group] },
        );
        this.registerOutputs({ name: this.group.name });
    }
}
