import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface BackendEndpointsArgs {
    readonly vpcId: pulumi.Input<string>;
    /** The backends' private subnets, one per availability zone: each interface endpoint has an address in each. */
    readonly subnetIds: pulumi.Input<string[]>;
    /** Their route tables, which the S3 gateway endpoint adds its route to. */
    readonly routeTableIds: pulumi.Input<string[]>;
    /** The VPC's IPv4 ranges: private DNS sends every instance of the VPC to these endpoints, so all of it is admitted. */
    readonly vpcCidrs: pulumi.Input<string[]>;
    readonly region: pulumi.Input<string>;
    /** The WssEdge's name, in each endpoint's Name tag: how a later run tells this edge's endpoints from others'. */
    readonly edgeName: string;
}

/**
 * How backends with no public address and no NAT reach AWS (backendEgress: vpc-endpoints):
 * interface endpoints for Systems Manager (ssm, ssmmessages, ec2messages: the agent's three
 * channels) and ECR (ecr.api for the login, ecr.dkr for the pulls: the image is the stack's
 * own or another in ECR), each with private DNS so the usual service names resolve to it; and an S3 gateway
 * endpoint in the private subnets' route tables, which carries the release store's objects,
 * ECR's image layers and Amazon Linux's package repositories (all on S3), at no charge.
 * The store is encrypted with KMS, but S3 decrypts on the reader's behalf: no KMS endpoint is needed.
 */
export class BackendEndpoints extends pulumi.ComponentResource {
    readonly interfaceEndpoints: aws.ec2.VpcEndpoint[];
    readonly gatewayEndpoint: aws.ec2.VpcEndpoint;

    constructor(name: string, args: BackendEndpointsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:network:BackendEndpoints", name, {}, opts);
        const securityGroup = new aws.ec2.SecurityGroup(
            name,
            {
                vpcId: args.vpcId,
                description: "wss-edge's AWS endpoints: HTTPS from the VPC",
                ingress: [
                    {
                        // Private DNS answers for the whole VPC: admitting only the backends would cut every other instance off Systems Manager and ECR.
                        description:
                            "Calls to Systems Manager and ECR from the VPC (the backends, and whatever else private DNS sends here)",
                        protocol: "tcp",
                        fromPort: 443,
                        toPort: 443,
                        cidrBlocks: args.vpcCidrs,
                    },
                ],
            },
            { parent: this },
        );
        this.interfaceEndpoints = interfaceServices.map(
            (service) =>
                new aws.ec2.VpcEndpoint(
                    `${name}-${service.replace(".", "-")}`,
                    {
                        vpcId: args.vpcId,
                        serviceName: pulumi.interpolate`com.amazonaws.${args.region}.${service}`,
                        vpcEndpointType: "Interface",
                        subnetIds: args.subnetIds,
                        securityGroupIds: [securityGroup.id],
                        privateDnsEnabled: true,
                        tags: { Name: endpointName(args.edgeName, service) },
                    },
                    { parent: this },
                ),
        );
        this.gatewayEndpoint = new aws.ec2.VpcEndpoint(
            `${name}-s3`,
            {
                vpcId: args.vpcId,
                serviceName: pulumi.interpolate`com.amazonaws.${args.region}.s3`,
                vpcEndpointType: "Gateway",
                routeTableIds: args.routeTableIds,
                tags: { Name: endpointName(args.edgeName, "s3") },
            },
            { parent: this },
        );
        this.registerOutputs({ gatewayEndpointId: this.gatewayEndpoint.id });
    }
}

/** The Name tag of this stack's endpoint for `service`: how a later run tells its own endpoints from others in the VPC. */
export const endpointName = (edgeName: string, service: string): string =>
    `${pulumi.getProject()}-${pulumi.getStack()}-${edgeName}-${service}`;

/** The interface endpoints the backends call: Systems Manager's three, ECR's two, and CloudWatch's (their metrics). */
export const interfaceServices = ["ssm", "ssmmessages", "ec2messages", "ecr.api", "ecr.dkr", "monitoring"] as const;
