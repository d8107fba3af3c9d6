import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { backendFleetFile, type EdgePlan } from "../plan/edgePlan";
import type { Backend } from "./backendFleet";
import type { ReleaseChannel } from "./releaseChannel";

export interface FleetNoticeArgs {
    readonly channel: ReleaseChannel;
    readonly backends: readonly Backend[];
    readonly port: number;
    /** The edge's plan, as the proxies run it. */
    readonly plan: pulumi.Output<EdgePlan>;
    /** What must be done before any backend is told: the proxies' rollout of that plan. */
    readonly after: pulumi.Input<pulumi.Resource>[];
}

/**
 * Tells each backend the fleet every proxy routes by, once the proxies' rollout is done: a
 * backend that learns that a key it holds now hashes elsewhere (backends joined or left, the
 * affinity mode changed) moves that socket there, over rebalanceSeconds (backend/server.mjs).
 * After the rollout, never before it: a socket moved while the proxies still hash by the old
 * fleet would come back to the same backend, and move again once they change. Run again only
 * when the fleet, as that backend sees it, changes.
 */
export class FleetNotice extends pulumi.ComponentResource {
    readonly notices: command.local.Command[];

    constructor(name: string, args: FleetNoticeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:backends:FleetNotice", name, {}, opts);
        this.notices = args.backends.map((backend) => {
            const fleet = pulumi
                .all([args.plan, backend.privateIp])
                .apply(([plan, address]) => JSON.stringify(backendFleetFile(plan, { address, port: args.port })));
            return args.channel.send(
                `${name}-${backend.name}`,
                {
                    document: args.channel.fleetDocument,
                    parameters: { Fleet: fleet.apply((json) => Buffer.from(json).toString("base64")) },
                    targets: { instanceIds: [backend.instance.id] },
                    what: `${backend.name}'s fleet`,
                    triggers: [fleet],
                    dependsOn: args.after,
                },
                { parent: this },
            );
        });
        this.registerOutputs({});
    }
}
