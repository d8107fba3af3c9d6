import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { ProxyPlatform } from "../settings/settingsTable";
import { hardenedInstanceSettings, proxyMachine } from "./instanceDefaults";

export interface EdgeProxyArgs {
    readonly instanceType: string;
    /** The proxy's Debian release (proxyPlatform). */
    readonly platform: ProxyPlatform;
    readonly subnetId: pulumi.Input<string>;
    readonly securityGroupId: pulumi.Input<string>;
    readonly instanceProfile: pulumi.Input<string>;
    /** First boot: NGINX, and the store's current edge release (host/proxyHost.ts). */
    readonly userData: pulumi.Input<string>;
    /** An IPv6 address too, from the subnet's IPv6 range (NGINX listens on [::]:443 already). */
    readonly ipv6: boolean;
    /**
     * Ask for a public IPv4 address at launch (your public subnets may not assign one by default,
     * as AWS Security Hub's EC2.15 wants): the VM reaches Debian's mirrors and Systems Manager from
     * its first boot, before the Elastic IP moves to it. In the default VPC its subnets assign one.
     */
    readonly publicAddress: boolean;
}

/**
 * The single-VM edge's proxy: Debian 12 with its NGINX 1.22 (the version every test here runs),
 * managed by Systems Manager, with no port open but the edge's. It serves the store's current
 * release from its first boot; the Elastic IP is moved to it only once it serves (components/wssEdge.ts).
 */
export class EdgeProxy extends pulumi.ComponentResource {
    readonly instance: aws.ec2.Instance;
    readonly memoryMiB: pulumi.Output<number>;
    readonly vcpus: pulumi.Output<number>;

    constructor(name: string, args: EdgeProxyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:proxy:EdgeProxy", name, {}, opts);
        const machine = proxyMachine(args.instanceType, args.platform, this);
        this.memoryMiB = machine.memoryMiB;
        this.vcpus = machine.vcpus;
        this.instance = new aws.ec2.Instance(
            name,
            {
                ami: machine.amiId,
                instanceType: args.instanceType,
                subnetId: args.subnetId,
                vpcSecurityGroupIds: [args.securityGroupId],
                iamInstanceProfile: args.instanceProfile,
                ...hardenedInstanceSettings,
                userData: args.userData,
                ...(args.ipv6 ? { ipv6AddressCount: 1 } : {}),
                ...(args.publicAddress ? { associatePublicIpAddress: true } : {}),
                // cloud-init runs user data once per instance: an edited one only takes effect on a new VM.
                userDataReplaceOnChange: true,
                tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}-proxy`, Role: "wss-edge-proxy" },
            },
            // The AMI moves on; a newer Debian image must not replace a serving edge on its own.
            // A new instance type replaces the VM instead of stopping it: the new one boots and
            // serves, and only then does the address move to it (components/wssEdge.ts).
            // A subnet of the region that appears later (a new zone's default subnet) must not move it either.
            // An IPv6 address added to a running VM would not be configured by its cloud-init, which
            // renders the network at first boot: a VM that gains one is replaced by the same path.
            { parent: this, ignoreChanges: ["ami", "subnetId"], replaceOnChanges: ["instanceType", "ipv6AddressCount"] },
        );
        this.registerOutputs({ instanceId: this.instance.id });
    }
}
