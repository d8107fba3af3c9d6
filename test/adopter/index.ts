// A team's own Pulumi program that adopts the edge: its VPC with public and private subnets in
// two zones (private ones routed through its own NAT elsewhere in its program), its hosted
// zone, and the edge placed in them as a component. test/component.test.ts runs it under mocks.
import * as aws from "@pulumi/aws";
import { WssEdge } from "../../components";

const vpc = new aws.ec2.Vpc("team", { cidrBlock: "10.40.0.0/16", enableDnsHostnames: true, enableDnsSupport: true });
const zones = ["eu-west-1a", "eu-west-1b"];
const publicSubnets = zones.map(
    (availabilityZone, i) =>
        new aws.ec2.Subnet(`team-public-${i}`, {
            vpcId: vpc.id,
            availabilityZone,
            cidrBlock: `10.40.${i}.0/24`,
            mapPublicIpOnLaunch: true,
        }),
);
const privateSubnets = zones.map(
    (availabilityZone, i) =>
        new aws.ec2.Subnet(`team-private-${i}`, { vpcId: vpc.id, availabilityZone, cidrBlock: `10.40.${10 + i}.0/24` }),
);
const zone = new aws.route53.Zone("team", { name: "example.com" });

const edge = new WssEdge("chat", {
    vpcId: vpc.id,
    publicSubnetIds: publicSubnets.map((s) => s.id),
    privateSubnetIds: privateSubnets.map((s) => s.id),
    domainName: "chat.example.com",
    hostedZoneId: zone.zoneId,
    proxyCount: 2,
    backendCount: 4,
    allowedOrigins: ["https://app.example.com"],
});

export const endpoint = edge.outputs.endpoint;
export const loadBalancerDnsName = edge.outputs.loadBalancerDnsName;
export const caCertificatePem = edge.outputs.caCertificatePem;
