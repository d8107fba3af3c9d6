import * as aws from "@pulumi/aws";
import type * as pulumi from "@pulumi/pulumi";
import type { SettingProblem, StackSettings } from "../settings/edgeSettings";
import { endpointName, interfaceServices } from "./backendEndpoints";

/** Where the edge is placed, as the user names it (vpcId, publicSubnetIds, privateSubnetIds). */
export interface NetworkPlacement {
    readonly vpcId: string;
    readonly publicSubnetIds: readonly string[];
    readonly privateSubnetIds: readonly string[];
}

export interface SubnetFacts {
    readonly id: string;
    readonly vpcId: string;
    readonly availabilityZone: string;
    /** Its route table sends IPv4's default route (0.0.0.0/0) to an internet gateway: what makes a subnet public. */
    readonly ipv4ToInternet: boolean;
    /** Its IPv6 range; "" when it has none. */
    readonly ipv6CidrBlock: string;
    /** The route table the subnet uses: its own association, or the VPC's main table. */
    readonly routeTableId: string;
    /** That table sends IPv6's default route (::/0) to an internet gateway: IPv6 clients can reach the subnet. */
    readonly ipv6ToInternet: boolean;
}

/** What EC2 says about the network the edge goes into. */
export interface NetworkFacts {
    readonly vpc: {
        readonly id: string;
        readonly cidrBlock: string;
        /** The primary range and every associated one. */
        readonly cidrBlocks: readonly string[];
        /** Its IPv6 range; "" when it has none. */
        readonly ipv6CidrBlock: string;
        readonly enableDnsSupport: boolean;
        readonly enableDnsHostnames: boolean;
    };
    readonly publicSubnets: readonly SubnetFacts[];
    readonly privateSubnets: readonly SubnetFacts[];
    /** Endpoints for the services the backends use that the VPC has already, not this stack's own. */
    readonly otherEndpoints: readonly EndpointFacts[];
}

export interface EndpointFacts {
    readonly id: string;
    /** The service's short name: ssm, ecr.api, s3… */
    readonly service: string;
    readonly type: string;
    readonly privateDnsEnabled: boolean;
    readonly routeTableIds: readonly string[];
}

/** What the edge needs of the network, from its settings. */
export interface NetworkNeeds {
    /** Zones the proxies spread over: 2 when load-balanced (the balancer and the group span zones), else 1. */
    readonly publicZones: number;
    /** Zones the backends spread over: 2 with two or more backends, so one zone's loss leaves some. */
    readonly privateZones: number;
    readonly loadBalanced: boolean;
    /** The backends reach AWS through interface endpoints, which answer by private DNS. */
    readonly endpoints: boolean;
    /** The edge serves IPv6 too: every public subnet needs an IPv6 range. */
    readonly ipv6: boolean;
}

/** Dual-stack is what the network offers: the VPC and every public subnet have an IPv6 range, and IPv6 routes to the internet. */
export const offersIpv6 = (facts: NetworkFacts): boolean =>
    facts.vpc.ipv6CidrBlock !== "" && facts.publicSubnets.every((subnet) => subnet.ipv6CidrBlock !== "" && subnet.ipv6ToInternet);

/** Why a VPC with an IPv6 range still gets an IPv4-only edge: the public subnets that lack a range or a route. */
export const ipv6Gaps = (facts: NetworkFacts): string[] =>
    facts.vpc.ipv6CidrBlock === ""
        ? []
        : facts.publicSubnets
              .filter((s) => s.ipv6CidrBlock === "" || !s.ipv6ToInternet)
              .map((s) => `${s.id} has ${s.ipv6CidrBlock === "" ? "no IPv6 range" : "no IPv6 route (::/0) to an internet gateway"}`);

/** What the edge needs of the network, from its settings. */
export const networkNeedsOf = (
    settings: Pick<StackSettings, "proxyCount" | "backendCount" | "backendEgress">,
    ipv6 = false,
): NetworkNeeds => ({
    publicZones: settings.proxyCount > 1 ? 2 : 1,
    privateZones: settings.backendCount > 1 ? 2 : 1,
    loadBalanced: settings.proxyCount > 1,
    endpoints: settings.backendEgress === "vpc-endpoints",
    ipv6,
});

/** Reads the VPC and each subnet from EC2; one EC2 does not know is named in the error, and any other failure (credentials, permissions) passes as it came. */
export async function lookUpNetwork(
    placement: NetworkPlacement,
    edgeName: string,
    needs: Pick<NetworkNeeds, "endpoints">,
    opts?: pulumi.InvokeOptions,
): Promise<NetworkFacts> {
    const vpc = await aws.ec2.getVpc({ id: placement.vpcId }, opts).catch((error: Error) => {
        throw notFound(error) ? new Error(`vpcId ${placement.vpcId}: EC2 does not know it in this region (${firstLine(error)})`) : error;
    });
    const subnet = async (id: string): Promise<SubnetFacts> => {
        const found = await aws.ec2.getSubnet({ id }, opts).catch((error: Error) => {
            throw notFound(error) ? new Error(`subnet ${id}: EC2 does not know it in this region (${firstLine(error)})`) : error;
        });
        const own = await aws.ec2.getRouteTables({ filters: [{ name: "association.subnet-id", values: [id] }] }, opts);
        const routeTableId =
            own.ids[0] ??
            (
                await aws.ec2.getRouteTables(
                    {
                        filters: [
                            { name: "vpc-id", values: [found.vpcId] },
                            { name: "association.main", values: ["true"] },
                        ],
                    },
                    opts,
                )
            ).ids[0];
        const table = await aws.ec2.getRouteTable({ routeTableId }, opts);
        return {
            id,
            vpcId: found.vpcId,
            availabilityZone: found.availabilityZone,
            ipv4ToInternet: table.routes.some((route) => route.cidrBlock === "0.0.0.0/0" && route.gatewayId?.startsWith("igw-")),
            ipv6CidrBlock: found.ipv6CidrBlock ?? "",
            routeTableId,
            ipv6ToInternet: table.routes.some((route) => route.ipv6CidrBlock === "::/0" && route.gatewayId?.startsWith("igw-")),
        };
    };
    const region = (await aws.getRegion({}, opts)).region;
    const endpoint = async (service: string): Promise<EndpointFacts[]> => {
        const found = await aws.ec2
            .getVpcEndpoint({ vpcId: placement.vpcId, serviceName: `com.amazonaws.${region}.${service}`, state: "available" }, opts)
            .catch((error: Error) => {
                if (/no matching/i.test(error.message)) return undefined;
                // Several: the VPC surely has its own way to the service.
                if (/multiple/i.test(error.message))
                    return {
                        id: "several endpoints",
                        vpcEndpointType: "",
                        privateDnsEnabled: true,
                        routeTableIds: [],
                        tags: {} as Record<string, string>,
                    };
                throw error;
            });
        if (found === undefined || (found.tags as Record<string, string> | undefined)?.Name === endpointName(edgeName, service)) return [];
        return [
            {
                id: found.id,
                service,
                type: found.vpcEndpointType,
                privateDnsEnabled: found.privateDnsEnabled,
                routeTableIds: found.routeTableIds,
            },
        ];
    };
    return {
        // Looked for only when the stack would add its own: with nat, no endpoint call is made (nor needs the permission).
        otherEndpoints: needs.endpoints ? (await Promise.all([...interfaceServices, "s3"].map(endpoint))).flat() : [],
        vpc: {
            id: vpc.id,
            cidrBlock: vpc.cidrBlock,
            cidrBlocks: [...new Set([vpc.cidrBlock, ...(vpc.cidrBlockAssociations ?? []).map((b) => b.cidrBlock)])],
            enableDnsSupport: vpc.enableDnsSupport,
            enableDnsHostnames: vpc.enableDnsHostnames,
            ipv6CidrBlock: vpc.ipv6CidrBlock ?? "",
        },
        publicSubnets: await Promise.all(placement.publicSubnetIds.map(subnet)),
        privateSubnets: await Promise.all(placement.privateSubnetIds.map(subnet)),
    };
}

const firstLine = (error: Error) => error.message.split("\n")[0];
/** EC2's answer for an ID it does not have (InvalidSubnetID.NotFound, InvalidVpcID.NotFound), or the provider's "no matching" one. */
const notFound = (error: Error) => /NotFound|no matching/i.test(error.message);

/** Every way the network cannot hold the edge, each naming the subnet or VPC at fault. */
export function networkProblems(facts: NetworkFacts, needs: NetworkNeeds): SettingProblem[] {
    const problems: SettingProblem[] = [];
    const lists = [
        ["publicSubnetIds", facts.publicSubnets, needs.publicZones, "the proxies"],
        ["privateSubnetIds", facts.privateSubnets, needs.privateZones, "the backends"],
    ] as const;
    for (const [key, subnets, zonesNeeded, who] of lists) {
        const value = JSON.stringify(subnets.map((s) => s.id));
        for (const subnet of subnets.filter((s) => s.vpcId !== facts.vpc.id))
            problems.push({ key, value, rule: `${subnet.id} is in ${subnet.vpcId}, not in vpcId ${facts.vpc.id}` });
        const zones = [...new Set(subnets.map((s) => s.availabilityZone))].sort();
        if (zones.length < zonesNeeded)
            problems.push({
                key,
                value,
                rule: `${who} need subnets in ${zonesNeeded} availability zones; these are in ${zones.length} (${zones.join(", ")})`,
            });
    }
    for (const subnet of facts.publicSubnets.filter((s) => !s.ipv4ToInternet))
        problems.push({
            key: "publicSubnetIds",
            value: JSON.stringify(facts.publicSubnets.map((s) => s.id)),
            rule: `${subnet.id} is not public: its route table (${subnet.routeTableId}) sends 0.0.0.0/0 to no internet gateway, and clients reach the proxies (or the balancer) through one`,
        });
    if (needs.ipv6)
        for (const subnet of facts.publicSubnets.filter((s) => s.ipv6CidrBlock === ""))
            problems.push({
                key: "publicSubnetIds",
                value: JSON.stringify(facts.publicSubnets.map((s) => s.id)),
                rule: `${subnet.id} has no IPv6 range: a dual-stack edge (ipv6) serves IPv6 from every public subnet`,
            });
    if (needs.loadBalanced)
        problems.push(...twoInOneZone("publicSubnetIds", facts.publicSubnets, "the balancer takes one subnet per zone"));
    if (needs.endpoints) {
        problems.push(
            ...twoInOneZone(
                "privateSubnetIds",
                facts.privateSubnets,
                "an interface endpoint takes one subnet per zone (backendEgress vpc-endpoints)",
            ),
        );
        const off = [
            ...(facts.vpc.enableDnsSupport ? [] : ["DNS support (enableDnsSupport)"]),
            ...(facts.vpc.enableDnsHostnames ? [] : ["DNS hostnames (enableDnsHostnames)"]),
        ];
        for (const other of facts.otherEndpoints) {
            const clash =
                other.service === "s3"
                    ? other.routeTableIds.filter((table) => facts.privateSubnets.some((s) => s.routeTableId === table))
                    : other.privateDnsEnabled
                      ? ["private DNS"]
                      : [];
            if (clash.length > 0)
                problems.push({
                    key: "backendEgress",
                    value: '"vpc-endpoints"',
                    rule: `${other.id} already serves ${other.service} in ${facts.vpc.id} (${other.service === "s3" ? `route tables ${clash.join(", ")}` : "with private DNS"}): the backends reach it as they are, and AWS would refuse a second; use backendEgress nat`,
                });
        }
        if (off.length > 0)
            problems.push({
                key: "vpcId",
                value: JSON.stringify(facts.vpc.id),
                rule: `has ${off.join(" and ")} off: interface endpoints answer by private DNS, which needs both on (backendEgress vpc-endpoints)`,
            });
    }
    return problems;
}

/** A problem for each zone that holds more than one of `subnets`. */
function twoInOneZone(key: string, subnets: readonly SubnetFacts[], why: string): SettingProblem[] {
    const zones = new Map<string, SubnetFacts[]>();
    for (const subnet of subnets) zones.set(subnet.availabilityZone, [...(zones.get(subnet.availabilityZone) ?? []), subnet]);
    return [...zones]
        .filter(([, inZone]) => inZone.length > 1)
        .map(([zone, inZone]) => ({
            key,
            value: JSON.stringify(subnets.map((s) => s.id)),
            rule: `${inZone.map((s) => s.id).join(" and ")} are both in ${zone}; ${why}`,
        }));
}
