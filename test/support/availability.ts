/**
 * The availability invariants every day-two change must keep, checked on the engine's order of
 * steps (engineOrder.ts) over the plan of the change (changePlan.ts):
 *
 * - Load-balanced, the edge never has zero serving proxies: nothing replaces or deletes the
 *   balancer, its listeners or target groups or the proxies' group, and a change to the group's
 *   template rolls in by an instance refresh that launches before it terminates (100% minimum
 *   healthy). The provider starts the refresh and does not wait for it (docs/engine-rules.md, g),
 *   so what keeps the edge serving is AWS's refresh, not the order of Pulumi's steps.
 * - One VM, the Elastic IP never points at a VM that does not serve: no step stops the proxy VM
 *   (an instance type change replaces it), and an association that moves the address comes
 *   after the deploy that checked the VM it names serves, and before the old VM goes.
 * - A backend is told a new fleet (and moves sockets by it) only after the proxies' rollout of it.
 * - No step dials what the same update released: every command finds its VMs by the instance IDs
 *   and addresses they have after the update (Systems Manager, not an address in state).
 */
import assert from "node:assert/strict";
import type { Change } from "./changePlan";
import { describe as describeSchedule, type EngineStep, engineSchedule, type Schedule } from "./engineOrder";
import { mockEdgeIp, mockProxyPublicIps, type RegisteredResource } from "./pulumiProgram";

const key = (r: RegisteredResource) => `${r.type}::${r.name}`;
const balancerParts = [
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/listener:Listener",
    "aws:lb/targetGroup:TargetGroup",
    "aws:autoscaling/group:Group",
];

/** The step that registers `resourceKey`'s new state in this change (create, update or a replacement's create). */
function registration(schedule: Schedule, resourceKey: string): EngineStep | undefined {
    return schedule.step(resourceKey, "create-replacement") ?? schedule.step(resourceKey, "create") ?? schedule.step(resourceKey, "update");
}

export function assertAvailability(change: Change): void {
    const schedule = engineSchedule(change.before, change.after, change.plan);
    const order = () => describeSchedule(schedule).join("\n");
    const loadBalanced = change.after.some((r) => r.type === "aws:autoscaling/group:Group");
    const wasLoadBalanced = change.before.some((r) => r.type === "aws:autoscaling/group:Group");

    if (loadBalanced && wasLoadBalanced) {
        for (const [resourceKey, action] of change.plan) {
            if (balancerParts.includes(resourceKey.split("::")[0]))
                assert.ok(action === "same" || action === "update", `${resourceKey} would be ${action}: the edge would stop serving`);
        }
        const group = change.after.find((r) => r.type === "aws:autoscaling/group:Group") as RegisteredResource;
        const previous = change.before.find((r) => key(r) === key(group)) as RegisteredResource;
        if (group.inputs.launchTemplate.version !== previous.inputs.launchTemplate.version) {
            const preferences = group.inputs.instanceRefresh?.preferences ?? {};
            assert.equal(group.inputs.instanceRefresh?.strategy, "Rolling", "a new template rolls in by an instance refresh");
            assert.ok(preferences.minHealthyPercentage >= 100, "the refresh never takes the group below its size");
            assert.ok(preferences.maxHealthyPercentage > 100, "it launches a new proxy before it terminates an old one");
        }
    }

    if (!loadBalanced && !wasLoadBalanced) {
        const proxy = "aws:ec2/instance:Instance::edge-proxy";
        const association = "aws:ec2/eipAssociation:EipAssociation::edge-proxy";
        const deploy = "command:local:Command::edge-deploy";
        assert.notEqual(change.plan.get(proxy), "update (stop and start)", "the proxy VM is never stopped under its address");
        const moved = registration(schedule, association);
        if (moved) {
            const checked = registration(schedule, deploy);
            assert.ok(checked, `the address moves, so the VM it moves to must be deployed to and checked first\n${order()}`);
            assert.ok(schedule.finishesBefore(checked, moved), `the address moves only after the deploy checked the VM\n${order()}`);
            const after = change.after.find((r) => key(r) === deploy) as RegisteredResource;
            const target = change.after.find((r) => key(r) === association) as RegisteredResource;
            assert.equal(
                after.inputs.environment.WSS_EDGE_TARGETS,
                target.inputs.instanceId,
                "the deploy checked the VM the address moves to",
            );
        }
        const oldVm = schedule.step(proxy, "delete-replaced");
        if (oldVm) {
            assert.ok(moved && schedule.finishesBefore(moved, oldVm), `the old VM goes only after the address left it\n${order()}`);
        }
    }

    // A backend moves sockets only to where the proxies already route them: it is told a fleet
    // after the rollout of the edge release that carries it, never at the same time or before.
    const rollout = registration(schedule, "command:local:Command::edge-deploy");
    for (const resourceKey of change.plan.keys()) {
        if (!resourceKey.startsWith("command:local:Command::edge-backend-fleet-")) continue;
        const notice = registration(schedule, resourceKey);
        if (notice && rollout)
            assert.ok(
                schedule.finishesBefore(rollout, notice),
                `${resourceKey} is told the fleet before the proxies route by it\n${order()}`,
            );
    }

    assertNoStaleTargets(change);
}

/** Every command's VMs and addresses are ones that exist after the update: none that it replaced or deleted. */
function assertNoStaleTargets(change: Change): void {
    const gone = new Set(
        [...change.plan]
            .filter(([, action]) => action === "delete" || action === "replace")
            .map(([resourceKey]) => resourceKey)
            .filter((resourceKey) => resourceKey.startsWith("aws:ec2/instance:Instance::")),
    );
    const released = change.before.filter((r) => gone.has(key(r))).flatMap((r) => [`${r.name}-id`]);
    for (const command of change.after.filter((r) => r.type === "command:local:Command")) {
        const env = command.inputs.environment as Record<string, string>;
        const targets = env.WSS_EDGE_TARGETS.split(" ");
        for (const id of released) assert.ok(!targets.includes(id), `${command.name} would run on ${id}, which this update releases`);
        // A public address read from state can be one this update released (an Elastic IP that
        // moved, a proxy's address after proxyCount 1 → 2): no command may be given one.
        const inputs = JSON.stringify(command.inputs);
        for (const address of [mockEdgeIp, ...mockProxyPublicIps])
            assert.ok(!inputs.includes(address), `${command.name} is given the public address ${address}, held in state`);
    }
}
