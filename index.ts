// The stack program: reads this stack's settings (Pulumi.<stack>.yaml), checks your network
// against EC2 when you name one, and creates one WssEdge (components/wssEdge.ts). Every problem
// is reported before any resource is registered.
import * as pulumi from "@pulumi/pulumi";
import { WssEdge } from "./components";
import { ipv6Gaps, lookUpNetwork, networkNeedsOf, networkProblems, offersIpv6 } from "./components/networkFacts";
import { SettingsError } from "./settings/edgeSettings";
import { loadStackSettings } from "./settings/pulumiSettings";

/** The stack's one edge: its resources were named after it before the component existed. */
const edgeName = "edge";

export = async () => {
    const settings = loadStackSettings();
    let ipv6 = false;
    if (settings.vpcId !== undefined) {
        const needs = networkNeedsOf(settings);
        const placement = { vpcId: settings.vpcId, publicSubnetIds: settings.publicSubnetIds, privateSubnetIds: settings.privateSubnetIds };
        const facts = await lookUpNetwork(placement, edgeName, needs);
        const problems = networkProblems(facts, needs);
        if (problems.length > 0) throw new SettingsError(pulumi.getProject(), problems);
        // In a VPC whose public subnets have IPv6 ranges and routes, the edge is dual-stack.
        ipv6 = offersIpv6(facts);
        const gaps = ipv6Gaps(facts);
        if (gaps.length > 0) pulumi.log.warn(`the VPC has an IPv6 range, but the edge stays IPv4-only: ${gaps.join("; ")}`);
    }
    return new WssEdge(edgeName, { ...settings, ipv6 }).outputs;
};
