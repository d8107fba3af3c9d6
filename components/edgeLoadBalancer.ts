import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface EdgeLoadBalancerArgs {
    readonly vpcId: pulumi.Input<string>;
    /** One subnet per availability zone: the balancer has a node in each. */
    readonly subnetIds: pulumi.Input<string[]>;
    readonly securityGroupId: pulumi.Input<string>;
    /** 443, and 80 when httpRedirect is on. */
    readonly ports: readonly number[];
    /** How long a leaving proxy keeps its open sockets (drainTimeoutSeconds, within AWS's 3600 s). */
    readonly drainSeconds: number;
    /** Clients reach it over IPv6 too: its nodes get IPv6 addresses in the subnets' IPv6 ranges. */
    readonly dualStack: boolean;
}

/** The longest deregistration delay AWS accepts. */
export const maxDeregistrationDelaySeconds = 3600;

/**
 * The load-balanced front: an internet-facing Network Load Balancer across every availability
 * zone (cross-zone, so a zone with fewer proxies still gets its share), TCP on 443 (and 80),
 * in front of the proxy VMs. It passes TCP through, so TLS still ends on NGINX, and prefixes
 * each connection with a PROXY protocol v2 header carrying the client's address; client IP
 * preservation is off, so NGINX sees the balancer's private address as the peer and believes
 * the header only from there. A TCP health check on the traffic port takes a proxy whose NGINX
 * is gone out of rotation.
 *
 * The proxies register themselves: they are an Auto Scaling group attached to the target groups
 * (ProxyGroup). A proxy leaves in order: the group deregisters it (no new connections), its
 * sockets get `drainSeconds` to end on their own while the VM still runs, and only then is it
 * terminated; whatever is left is closed by the balancer at the end of the same delay.
 */
export class EdgeLoadBalancer extends pulumi.ComponentResource {
    readonly loadBalancer: aws.lb.LoadBalancer;
    readonly targetGroups: aws.lb.TargetGroup[];
    readonly listeners: aws.lb.Listener[];
    readonly dnsName: pulumi.Output<string>;

    constructor(name: string, args: EdgeLoadBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:network:EdgeLoadBalancer", name, {}, opts);
        const drainSeconds = Math.min(args.drainSeconds, maxDeregistrationDelaySeconds);

        this.loadBalancer = new aws.lb.LoadBalancer(
            name,
            {
                loadBalancerType: "network",
                internal: false,
                subnets: args.subnetIds,
                securityGroups: [args.securityGroupId],
                enableCrossZoneLoadBalancing: true,
                // To the proxies it still speaks IPv4: the PROXY protocol header carries an IPv6 client's address.
                ...(args.dualStack ? { ipAddressType: "dualstack" } : {}),
                tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}` },
            },
            { parent: this },
        );
        this.dnsName = this.loadBalancer.dnsName;

        this.targetGroups = [];
        this.listeners = [];
        for (const port of args.ports) {
            const targetGroup = new aws.lb.TargetGroup(
                `${name}-${port}`,
                {
                    vpcId: args.vpcId,
                    port,
                    protocol: "TCP",
                    targetType: "instance",
                    proxyProtocolV2: true,
                    preserveClientIp: "false",
                    deregistrationDelay: drainSeconds,
                    connectionTermination: true,
                    healthCheck: { protocol: "TCP", port: "traffic-port", interval: 10, healthyThreshold: 2, unhealthyThreshold: 2 },
                },
                { parent: this },
            );
            this.targetGroups.push(targetGroup);
            this.listeners.push(
                new aws.lb.Listener(
                    `${name}-${port}`,
                    {
                        loadBalancerArn: this.loadBalancer.arn,
                        port,
                        protocol: "TCP",
                        defaultActions: [{ type: "forward", targetGroupArn: targetGroup.arn }],
                    },
                    { parent: this },
                ),
            );
        }

        this.registerOutputs({ dnsName: this.dnsName, arn: this.loadBalancer.arn });
    }
}
