import * as aws from "@pulumi/aws";
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { proxyHost, proxyUserData } from "../host/proxyHost";
import { cpuArchitecture, hardenedInstanceSettings, userDataWithHostKey } from "./instanceDefaults";

export interface EdgeProxyArgs {
    readonly instanceType: string;
    readonly subnetId: pulumi.Input<string>;
    readonly securityGroupId: pulumi.Input<string>;
    /**
     * The stable public address of the single-VM edge, allocated before the PKI so the edge
     * certificate can name it. Without it (behind the load balancer), the VM's own public
     * address serves SSH only.
     */
    readonly address?: aws.ec2.Eip;
    /** The tag that tells this proxy from the others behind the load balancer. */
    readonly role?: string;
}

/**
 * The fronting VM: Debian 12 with its NGINX 1.22 (the version every test here runs), behind an
 * Elastic IP, reachable over SSH by the deploy with a key the stack issues and a host key the
 * stack pins. It is also the way in to the backends: their deploys jump through it, and their
 * health gates run on it. What it serves comes later, from `EdgeDeploy`.
 */
export class EdgeProxy extends pulumi.ComponentResource {
    readonly instance: aws.ec2.Instance;
    readonly publicIp: pulumi.Output<string>;
    /** How the deploy reaches the VM: as `admin`, by its public address, with the host key pinned. */
    readonly connection: command.types.input.remote.ConnectionArgs;
    /** The key pair backends accept for the deploy. */
    readonly deployKeyName: pulumi.Output<string>;
    readonly deployPrivateKey: pulumi.Output<string>;
    /** What the instance type offers; it sizes NGINX's workers and its socket ceiling. */
    readonly memoryMiB: pulumi.Output<number>;
    readonly vcpus: pulumi.Output<number>;

    constructor(name: string, args: EdgeProxyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:proxy:EdgeProxy", name, {}, opts);

        const deployKey = new tls.PrivateKey(`${name}-deploy`, { algorithm: "ED25519" }, { parent: this });
        const keyPair = new aws.ec2.KeyPair(`${name}-deploy`, { publicKey: deployKey.publicKeyOpenssh }, { parent: this });
        this.deployKeyName = keyPair.keyName;
        this.deployPrivateKey = pulumi.secret(deployKey.privateKeyOpenssh);
        const hostKey = new tls.PrivateKey(`${name}-host`, { algorithm: "ED25519" }, { parent: this });

        const architecture = cpuArchitecture(args.instanceType);
        const ami = aws.ec2.getAmiOutput(
            {
                owners: ["136693071363"], // Debian's official cloud images
                mostRecent: true,
                filters: [
                    { name: "name", values: [`debian-12-${architecture === "arm64" ? "arm64" : "amd64"}-*`] },
                    { name: "state", values: ["available"] },
                ],
            },
            { parent: this },
        );
        const instanceType = aws.ec2.getInstanceTypeOutput({ instanceType: args.instanceType }, { parent: this });
        this.memoryMiB = instanceType.memorySize;
        this.vcpus = instanceType.defaultVcpus;

        this.instance = new aws.ec2.Instance(
            name,
            {
                ami: ami.id,
                instanceType: args.instanceType,
                subnetId: args.subnetId,
                vpcSecurityGroupIds: [args.securityGroupId],
                keyName: keyPair.keyName,
                ...hardenedInstanceSettings,
                userData: userDataWithHostKey(hostKey, proxyUserData),
                // cloud-init runs user data once per instance: an edited one only takes effect on a new VM.
                userDataReplaceOnChange: true,
                tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}-${args.role ?? "proxy"}`, Role: "wss-edge-proxy" },
            },
            // The AMI moves on; a newer Debian image must not replace a serving edge on its own.
            { parent: this, ignoreChanges: ["ami"] },
        );
        if (args.address) {
            const association = new aws.ec2.EipAssociation(
                name,
                // A replacement VM is created before the old one is deleted: the address must be able to move.
                { allocationId: args.address.allocationId, instanceId: this.instance.id, allowReassociation: true },
                { parent: this },
            );
            this.publicIp = pulumi.all([args.address.publicIp, association.id]).apply(([ip]) => ip);
        } else {
            // The default subnets give every VM a public address (EC2 gives a new one when an
            // Elastic IP leaves it): behind the load balancer it serves the deploy's SSH only.
            this.publicIp = this.instance.publicIp;
        }

        this.connection = {
            host: this.publicIp,
            user: proxyHost.user,
            privateKey: this.deployPrivateKey,
            hostKey: hostKey.publicKeyOpenssh,
            // A new VM takes a minute or two before SSH answers.
            dialErrorLimit: 40,
        };

        this.registerOutputs({ publicIp: this.publicIp, instanceId: this.instance.id, hostKey: hostKey.publicKeyOpenssh });
    }
}
