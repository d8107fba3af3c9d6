import { isIPv6 } from "node:net";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { backendHost } from "../host/backendHost";
import { proxyHost } from "../host/proxyHost";

export interface EdgeNetworkArgs {
    /** Who may connect on 443 (and on 80 when `httpRedirect`). */
    readonly allowedCidrs: readonly string[];
    readonly httpRedirect: boolean;
    readonly backendPort: number;
    /** Proxies behind a Network Load Balancer: clients reach the balancer, and only it reaches the proxies. */
    readonly loadBalanced: boolean;
}

/**
 * Where the edge lives and who may talk to what: the account's default VPC, one subnet per
 * availability zone, the proxy's security group (443 from the world or the allowed ranges) and
 * the backends' (their port from the proxy only). No group admits SSH or any other way in:
 * Systems Manager reaches the VMs through their agents' own outbound connections, and
 * operators use Session Manager. Load-balanced,
 * the allowed ranges reach the balancer's group instead, and the proxies' 443 (and 80) admit
 * the balancer only, its health checks included: no client reaches a proxy directly.
 */
export class EdgeNetwork extends pulumi.ComponentResource {
    readonly vpcId: pulumi.Output<string>;
    /** The VPC's IPv4 range: where the load balancer's nodes connect to the proxies from. */
    readonly vpcCidr: pulumi.Output<string>;
    /** Default subnets, sorted, one per availability zone. */
    readonly subnetIds: pulumi.Output<string[]>;
    readonly proxySecurityGroup: aws.ec2.SecurityGroup;
    readonly backendSecurityGroup: aws.ec2.SecurityGroup;
    readonly loadBalancerSecurityGroup?: aws.ec2.SecurityGroup;

    constructor(name: string, args: EdgeNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:network:EdgeNetwork", name, {}, opts);
        const invokeOpts = { parent: this };
        const vpc = aws.ec2.getVpcOutput({ default: true }, invokeOpts);
        this.vpcId = vpc.id;
        this.vpcCidr = vpc.cidrBlock;
        this.subnetIds = aws.ec2
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

        const publicPorts = [443, ...(args.httpRedirect ? [80] : [])];
        const clientRules = publicPorts.map((port) => ({
            description: port === 443 ? "WebSocket clients (TLS)" : "HTTP, redirected to HTTPS",
            protocol: "tcp",
            fromPort: port,
            toPort: port,
            ...splitCidrs(args.allowedCidrs),
        }));
        if (args.loadBalanced) {
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
                        cidrBlocks: [this.vpcCidr],
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
            subnetIds: this.subnetIds,
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
