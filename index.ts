// The stack program: reads this stack's settings (Pulumi.<stack>.yaml), checks your network
// against EC2 when you name one, and creates one WssEdge (components/wssEdge.ts). Every problem
// is reported before any resource is registered.
import * as pulumi from "@pulumi/pulumi";
import { WssEdge } from "./components";
import { lookUpNetwork, networkNeedsOf, networkProblems } from "./components/networkFacts";
import { SettingsError } from "./settings/edgeSettings";
import { loadStackSettings } from "./settings/pulumiSettings";

export = async () => {
    const settings = loadStackSettings();
    if (settings.vpcId !== undefined) {
        const facts = await lookUpNetwork({
            vpcId: settings.vpcId,
            publicSubnetIds: settings.publicSubnetIds,
            privateSubnetIds: settings.privateSubnetIds,
        });
        const problems = networkProblems(facts, networkNeedsOf(settings));
        if (problems.length > 0) throw new SettingsError(pulumi.getProject(), problems);
    }
    return new WssEdge("edge", settings).outputs;
};
