import { isIPv6 } from "node:net";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { backendHost } from "../host/backendHost";
import { proxyHost } from "../host/proxyHost";
import { SettingsError } from "../settings/edgeSettings";
import { lookUpNetwork, type NetworkNeeds, type NetworkPlacement, networkProblems } from "./networkFacts";

export interface EdgeNetworkArgs {
    /** Who may connect on 443 (and on 80 when `httpRedirect`). */
    readonly allowedCidrs: readonly string[];
    readonly httpRedirect: boolean;
    readonly backendPort: number;
    /** Your VPC and subnets; without them, the region's default VPC and its default subnets. */
    readonly placement?: pulumi.Input<NetworkPlacement>;
    /** Zones and features the edge needs of the network: checked against EC2's facts before anything goes into it. */
    readonly needs: NetworkNeeds;
}

/**
 * Where the edge lives and who may talk to what: your VPC with its public subnets (proxies, the
 * balancer) and private ones (backends, with no public address), or else the account's default
 * VPC, one default subnet per availability zone for both. Your network is read from EC2 and
 * checked first (components/networkFacts.ts): a subnet outside the VPC, too few zones or a
 * subnet without public addresses stops the program, naming the subnet, before any security
 * group goes into it. Then the proxy's security group (443 from the world or the allowed ranges) and
 * the backends' (their port from the proxy only). No group admits SSH or any other way in:
 * Systems Manager reaches the VMs through their agents' own outbound connections, and
 * operators use Session Manager. Load-balanced,
 * the allowed ranges reach the balancer's group instead, and the proxies' 443 (and 80) admit
 * the balancer only, its health checks included: no client reaches a proxy directly.
 */
export class EdgeNetwork extends pulumi.ComponentResource {
    readonly vpcId: pulumi.Output<string>;
    /** Every IPv4 range of the VPC, the primary and any associated: where the load balancer's nodes connect to the proxies from. */
    readonly vpcCidrs: pulumi.Output<string[]>;
    /** The proxies' (and the balancer's) subnets: yours, or the default ones sorted, one per availability zone. */
    readonly publicSubnetIds: pulumi.Output<string[]>;
    /** The backends' subnets: yours, or the same default ones. */
    readonly privateSubnetIds: pulumi.Output<string[]>;
    /** The route tables of the private subnets (each its own, or the VPC's main table); empty in the default VPC. */
    readonly privateRouteTableIds: pulumi.Output<string[]>;
    /**
     * Placed in your VPC (not the region's default one): your private subnets give backends no
     * public address, and your public subnets may assign proxies none by default, so they ask.
     */
    readonly inYourVpc: boolean;
    readonly proxySecurityGroup: aws.ec2.SecurityGroup;
    readonly backendSecurityGroup: aws.ec2.SecurityGroup;
    readonly loadBalancerSecurityGroup?: aws.ec2.SecurityGroup;

    constructor(name: string, args: EdgeNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:network:EdgeNetwork", name, {}, opts);
        const invokeOpts = { parent: this };
        this.inYourVpc = args.placement !== undefined;
        if (args.placement === undefined) {
            const vpc = aws.ec2.getVpcOutput({ default: true }, invokeOpts);
            this.vpcId = vpc.id;
            this.vpcCidrs = vpc.cidrBlockAssociations.apply((blocks) => blocks.map((b) => b.cidrBlock));
            this.publicSubnetIds = aws.ec2
                .getSubnetsOutput(
                    {
                        filters: [
                            { name: "vpc-id", values: [vpc.id] },
                            { name: "default-for-az", values: ["true"] },
                        ],
                    },
                    invokeOpts,
                )
                .ids.apply((ids) => [...ids].sort());
            this.privateSubnetIds = this.publicSubnetIds;
            this.privateRouteTableIds = pulumi.output([]);
        } else {
            const facts = pulumi.output(args.placement).apply(async (placement) => {
                const found = await lookUpNetwork(placement, name, args.needs, invokeOpts);
                const problems = networkProblems(found, args.needs);
                if (problems.length > 0) throw new SettingsError(pulumi.getProject(), problems);
                return found;
            });
            this.vpcId = facts.vpc.id;
            this.vpcCidrs = facts.vpc.cidrBlocks.apply((blocks) => [...blocks]);
            this.publicSubnetIds = facts.publicSubnets.apply((subnets) => subnets.map((s) => s.id));
            this.privateSubnetIds = facts.privateSubnets.apply((subnets) => subnets.map((s) => s.id));
            this.privateRouteTableIds = facts.privateSubnets.apply((subnets) => [...new Set(subnets.map((s) => s.routeTableId))].sort());
        }

        const publicPorts = [443, ...(args.httpRedirect ? [80] : [])];
        const clientRules = publicPorts.map((port) => ({
            description: port === 443 ? "WebSocket clients (TLS)" : "HTTP, redirected to HTTPS",
            protocol: "tcp",
            fromPort: port,
            toPort: port,
            ...splitCidrs(args.allowedCidrs),
        }));
        if (args.needs.loadBalanced) {
            this.loadBalancerSecurityGroup = new aws.ec2.SecurityGroup(
                `${name}-load-balancer`,
                {
                    vpcId: this.vpcId,
                    description: "wss-edge load balancer: TLS (and HTTP) from clients, on to the proxies",
                    ingress: clientRules,
                    egress: publicPorts.map((port) => ({
                        description: "To the proxies, and their health checks",
                        protocol: "tcp",
                        fromPort: port,
                        toPort: port,
                        cidrBlocks: this.vpcCidrs,
                    })),
                },
                { parent: this },
            );
        }
        const balancer = this.loadBalancerSecurityGroup;
        this.proxySecurityGroup = new aws.ec2.SecurityGroup(
            `${name}-proxy`,
            {
                vpcId: this.vpcId,
                description: "wss-edge proxy: TLS from clients",
                ingress: [
                    ...(balancer
                        ? publicPorts.map((port) => ({
                              description: port === 443 ? "The load balancer: clients' TLS and health checks" : "The load balancer: HTTP",
                              protocol: "tcp",
                              fromPort: port,
                              toPort: port,
                              securityGroups: [balancer.id],
                          }))
                        : clientRules),
                    {
                        description: "NGINX's metrics, to the stack's own proxies",
                        protocol: "tcp",
                        fromPort: proxyHost.exporterPort,
                        toPort: proxyHost.exporterPort,
                        self: true,
                    },
                ],
                egress: [allEgress("Backends, package mirrors, Systems Manager, the release store")],
            },
            { parent: this },
        );
        this.backendSecurityGroup = new aws.ec2.SecurityGroup(
            `${name}-backend`,
            {
                vpcId: this.vpcId,
                description: "wss-edge backends: the WebSocket port, from the proxy only",
                ingress: [
                    {
                        description: "WebSockets from the edge proxy",
                        protocol: "tcp",
                        fromPort: args.backendPort,
                        toPort: args.backendPort,
                        securityGroups: [this.proxySecurityGroup.id],
                    },
                    {
                        description: "The app's metrics, to the edge proxy",
                        protocol: "tcp",
                        fromPort: backendHost.metricsPort,
                        toPort: backendHost.metricsPort,
                        securityGroups: [this.proxySecurityGroup.id],
                    },
                ],
                egress: [allEgress("Image pulls, Systems Manager, the release store")],
            },
            { parent: this },
        );
        this.registerOutputs({
            vpcId: this.vpcId,
            publicSubnetIds: this.publicSubnetIds,
            privateSubnetIds: this.privateSubnetIds,
            proxySecurityGroupId: this.proxySecurityGroup.id,
            loadBalancerSecurityGroupId: this.loadBalancerSecurityGroup?.id,
            backendSecurityGroupId: this.backendSecurityGroup.id,
        });
    }
}

function splitCidrs(cidrs: readonly string[]): { cidrBlocks: string[]; ipv6CidrBlocks: string[] } {
    return {
        cidrBlocks: cidrs.filter((c) => !isIPv6(c.split("/")[0])),
        ipv6CidrBlocks: cidrs.filter((c) => isIPv6(c.split("/")[0])),
    };
}

function allEgress(description: string) {
    return { description, protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"], ipv6CidrBlocks: ["::/0"] };
}
