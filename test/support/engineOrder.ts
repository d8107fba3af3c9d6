/**
 * The order in which `pulumi up` runs its steps, which Pulumi's mocks cannot show. Given what the
 * program registered before and after a change and the plan between them (changePlan.ts), this
 * models which step always finishes before which, and which may run at the same time, so tests
 * can assert availability invariants ("the address moves only after the new VM's deploy finished").
 * Every rule is read in the engine's or the SDK's source; docs/engine-rules.md quotes them.
 * Sources read: pulumi/pulumi at 1b5949891b3c (pkg/resource/deploy/*, sdk/nodejs/runtime/*).
 *
 * The model in short:
 * - Registrations (creates, updates, replacements' creates): a resource's step starts once every
 *   resource it depends on (inputs' sources, dependsOn) and its parent have finished registering;
 *   an unchanged resource ("same") finishes at once but still passes the wait on to its dependents.
 * - Replacements create the new resource first; the old one is deleted with the other deletes after
 *   every registration step of the deployment has finished. With deleteBeforeReplace, the old
 *   resource (and the dependents that are replaced too, dependents first) is deleted in the same
 *   chain, right before the new one is created.
 * - Deletes run in antichains: layers of the condemned resources' dependency graph, dependents
 *   first; each layer finishes before the next starts (independent deletes in one layer overlap).
 *
 * Limits (what RegisteredResource does not carry):
 * - Parents are not recorded. They are derived from the URN (the parent's type is the last but one
 *   element of the type chain; the mocks' URNs carry only that one, real ones the whole chain) and,
 *   among several parents of that type, the one whose name is the longest `name-` prefix of the
 *   child's. A child of an ambiguous parent gets none.
 * - Provider references are not recorded: a change to a provider resource is not modelled.
 * - Whether a provider asks for delete-before-replace is not recorded (the program's option is, when
 *   true). The Terraform bridge asks for it when an auto-named field such as `name` is set explicitly
 *   (pulumi-terraform-bridge pkg/tfbridge/schema.go, nameRequiresDeleteBeforeReplace): pass those
 *   keys as `providerDeleteBeforeReplace`.
 * - Which dependents a delete-before-replace deletes early is decided by the engine with a provider
 *   Diff (step_generator.go, calculateDependentReplacements); here: the dependents the plan replaces.
 *   A dependent the plan deletes is left with the other deletes.
 */
import type { Plan } from "./changePlan";
import type { RegisteredResource } from "./pulumiProgram";

export type StepOp = "create" | "update" | "create-replacement" | "delete-replaced" | "delete";

export interface EngineStep {
    readonly op: StepOp;
    /** `${type}::${name}`, as changePlan keys resources. */
    readonly key: string;
}

export interface Schedule {
    readonly steps: readonly EngineStep[];
    /** a always finishes before b starts, whatever the engine's parallelism. */
    finishesBefore(a: EngineStep, b: EngineStep): boolean;
    /** May a and b run at the same time (no ordering forces one before the other)? */
    mayOverlap(a: EngineStep, b: EngineStep): boolean;
    /** The step of resource `key` with op `op`, or undefined. */
    step(key: string, op?: StepOp): EngineStep | undefined;
}

export interface ScheduleOptions {
    /** Keys of resources whose provider asks to delete before replacing (see the limits above). */
    readonly providerDeleteBeforeReplace?: Iterable<string>;
}

const keyOf = (r: RegisteredResource) => `${r.type}::${r.name}`;
const isComponent = (r: RegisteredResource) => r.type.startsWith("wss-edge:") || r.type.startsWith("pulumi:");
const stepId = (op: StepOp, key: string) => `${op} ${key}`;

/** A DAG whose edge a → b means "a finishes before b starts"; instantaneous internal nodes pass orderings on. */
class OrderGraph {
    private readonly edges = new Map<string, Set<string>>();
    private readonly reach = new Map<string, Set<string>>();

    node(id: string): string {
        if (!this.edges.has(id)) this.edges.set(id, new Set());
        return id;
    }

    edge(from: string, to: string): void {
        this.node(to);
        this.edges.get(this.node(from))!.add(to);
    }

    /** Every node reachable from `from` by one edge or more. */
    reachable(from: string): Set<string> {
        const known = this.reach.get(from);
        if (known) return known;
        const seen = new Set<string>();
        const stack = [...(this.edges.get(from) ?? [])];
        while (stack.length > 0) {
            const next = stack.pop()!;
            if (seen.has(next)) continue;
            seen.add(next);
            stack.push(...(this.edges.get(next) ?? []));
        }
        this.reach.set(from, seen);
        return seen;
    }
}

/** The qualified type chain of a URN (`urn:pulumi:stack::project::A$B$C::name` → `A$B$C`). */
const typeChain = (urn: string) => urn.split("::")[2] ?? "";

/**
 * Each resource's parent, derived from its URN (see the limits above). The engine names a
 * resource's URN after its parent's type chain (pulumi/pulumi pkg/resource/deploy/step_generator.go,
 * generateURN); the mocks after the parent's last type only (@pulumi/pulumi runtime/mocks.js, newUrn).
 */
function parentsOf(resources: readonly RegisteredResource[]): Map<RegisteredResource, RegisteredResource> {
    const parents = new Map<RegisteredResource, RegisteredResource>();
    for (const child of resources) {
        const chain = typeChain(child.urn).split("$");
        if (chain.length < 2) continue;
        const parentType = chain[chain.length - 2];
        let candidates = resources.filter((r) => r !== child && r.type === parentType);
        // A real URN names the whole chain: the parent's own chain is the child's but its last type.
        if (chain.length > 2) candidates = candidates.filter((r) => typeChain(r.urn) === chain.slice(0, -1).join("$"));
        if (candidates.length > 1) {
            const prefixed = candidates.filter((r) => child.name.startsWith(`${r.name}-`));
            const longest = Math.max(...prefixed.map((r) => r.name.length));
            candidates = prefixed.filter((r) => r.name.length === longest);
        }
        if (candidates.length === 1) parents.set(child, candidates[0]);
    }
    return parents;
}

/** Indexes one run's registrations: by URN, parents, children. */
class Registrations {
    readonly byUrn: Map<string, RegisteredResource>;
    readonly parent: Map<RegisteredResource, RegisteredResource>;
    readonly children = new Map<RegisteredResource, RegisteredResource[]>();

    constructor(readonly resources: readonly RegisteredResource[]) {
        this.byUrn = new Map(resources.map((r) => [r.urn, r]));
        this.parent = parentsOf(resources);
        for (const [child, parent] of this.parent) this.children.set(parent, [...(this.children.get(parent) ?? []), child]);
    }

    /**
     * The resources `r` waits for. A component in the list stands for the custom resources under it,
     * not diving into a custom resource's children — as the SDK expands dependsOn before it sends
     * the request (sdk/nodejs/runtime/dependsOn.ts, getAllTransitivelyReferencedResources), so the
     * captured lists normally hold custom resources only. `keepComponents` keeps the component too,
     * as the engine's delete scheduling does (pkg/resource/graph/dependency_graph.go, DependenciesOf).
     */
    dependencies(r: RegisteredResource, keepComponents: boolean): RegisteredResource[] {
        const out = new Set<RegisteredResource>();
        const visit = (d: RegisteredResource) => {
            if (d === r || out.has(d)) return;
            if (!isComponent(d) || keepComponents) out.add(d);
            if (isComponent(d)) for (const c of this.children.get(d) ?? []) visit(c);
        };
        for (const urn of r.dependencies) {
            const d = this.byUrn.get(urn);
            if (d) visit(d);
        }
        return [...out];
    }
}

export function engineSchedule(
    before: readonly RegisteredResource[],
    after: readonly RegisteredResource[],
    plan: Plan,
    options: ScheduleOptions = {},
): Schedule {
    const graph = new OrderGraph();
    const steps = new Map<string, EngineStep>();
    const addStep = (op: StepOp, key: string): string => {
        const id = stepId(op, key);
        if (!steps.has(id)) steps.set(id, { op, key });
        return graph.node(id);
    };
    const olds = new Registrations(before);
    const news = new Registrations(after);
    const oldByKey = new Map(before.map((r) => [keyOf(r), r]));
    const newIndex = new Map(after.map((r, i) => [keyOf(r), i]));
    const providerDbr = new Set(options.providerDeleteBeforeReplace ?? []);
    const deleteBeforeReplace = (r: RegisteredResource) => r.options.deleteBeforeReplace || providerDbr.has(keyOf(r));
    /** Old resources a delete-before-replace deleted during the registrations (the engine's pendingDeletes); not deleted again. */
    const deletedEarly = new Set<string>();
    const done = (r: RegisteredResource) => graph.node(`registered ${r.urn}`);

    // Registrations. The SDK sends a resource's RegisterResource only once its dependencies and its
    // parent have registered: sdk/nodejs/runtime/resource.ts, prepareResource: "Before we can
    // proceed, all our dependencies must be finished." / "Wait for the parent to complete." — it
    // awaits their URNs, which resolve when their RegisterResource RPC returns; the engine answers
    // that RPC only when the resource's steps are done (pkg/resource/deploy/source_eval.go,
    // resmon.RegisterResource: "Now block waiting for the operation to finish."). The engine runs
    // each registration's steps as one chain, in order (deployment_executor.go, handleSingleEvent:
    // `ex.stepExec.ExecuteSerial(newSteps)`), as soon as a worker is free: chains without a path
    // between them may overlap (step_executor.go: "any chain given to us by the step generator is
    // already ready to execute"; default --parallel: 4 × GOMAXPROCS, pkg/cmd/pulumi/operations/up.go).
    for (const r of after) {
        const key = keyOf(r);
        const action = isComponent(r) ? "same" : (plan.get(key) ?? "same");
        const chain: string[] = [];
        if (action === "create") chain.push(addStep("create", key));
        else if (action === "update" || action === "update (stop and start)") chain.push(addStep("update", key));
        else if (action === "replace") {
            if (deletedEarly.has(key)) {
                // Already deleted by another resource's delete-before-replace: "recreating", the
                // new one is created (step_generator.go, generateResourceSteps, "Case 1: recreating").
                chain.push(addStep("create-replacement", key));
            } else if (deleteBeforeReplace(r)) {
                // Delete-before-replace: step_generator.go, continueStepsFromDiff: "DeleteBeforeCreate
                // implies that we must immediately delete the resource. For correctness, we must also
                // eagerly delete all resources that depend directly or indirectly on the resource being
                // replaced and would be replaced by a change to the relevant dependency." and
                // "Deletions must occur in reverse dependency order". One chain: the dependents'
                // deletes, the old resource's delete, then the new one's create.
                for (const dependent of dependentsReplacedWith(r).reverse()) {
                    chain.push(addStep("delete-replaced", dependent));
                    deletedEarly.add(dependent);
                }
                chain.push(addStep("delete-replaced", key), addStep("create-replacement", key));
                deletedEarly.add(key);
            } else {
                // Create-before-delete: the new resource now, "note that the delete step is
                // generated "later" on, after all creates/updates finish." (continueStepsFromDiff).
                chain.push(addStep("create-replacement", key));
            }
        }
        const waits = news.dependencies(r, false).map(done);
        const parent = news.parent.get(r);
        if (parent) waits.push(done(parent));
        const first = chain[0] ?? done(r);
        for (const w of waits) graph.edge(w, first);
        for (let i = 1; i < chain.length; i++) graph.edge(chain[i - 1], chain[i]);
        if (chain.length > 0) graph.edge(chain[chain.length - 1], done(r));
    }

    /**
     * The old dependents of `root` the engine deletes with it (step_generator.go,
     * calculateDependentReplacements): walking the old graph in order, a dependent is in when it is
     * replaced and depends on the root or on one already in. Resources registered before the root
     * cannot depend on it and are left out ("impossibleDependents").
     */
    function dependentsReplacedWith(root: RegisteredResource): string[] {
        const old = oldByKey.get(keyOf(root));
        if (!old) return [];
        const replaceSet = new Set<RegisteredResource>([old]);
        const found: string[] = [];
        for (const candidate of before.slice(before.indexOf(old) + 1)) {
            const key = keyOf(candidate);
            if (isComponent(candidate) || plan.get(key) !== "replace" || deletedEarly.has(key)) continue;
            if ((newIndex.get(key) ?? Number.POSITIVE_INFINITY) < (newIndex.get(keyOf(root)) ?? 0)) continue;
            if (olds.dependencies(candidate, false).some((d) => replaceSet.has(d))) {
                replaceSet.add(candidate);
                found.push(key);
            }
        }
        return found;
    }

    // Deletes start once every registration step has finished. The deletes are generated after the
    // program's last event (deployment_executor.go, Execute: `if seenNil && ex.asyncEventsExpected
    // == 0` → performPostSteps), and performPostSteps first takes the step executor's write lock
    // ("GenerateDeletes/Refreshes mutates state we need to lock the step executor while we do
    // this." `ex.stepExec.Lock()`), which waits for every running chain: each holds a read lock
    // until it finishes (step_executor.go, ExecuteSerial: "The worker that receives the chain
    // releases it in executeChain after the whole chain finishes.").
    const registrationsDone = graph.node("all registrations done");
    for (const r of after) graph.edge(done(r), registrationsDone);

    // The condemned: resources the program no longer registers, and the old halves of replacements
    // made create-first (step_generator.go, GenerateDeletes: `if res.Delete` → "Planner decided to
    // delete '%v' due to replacement", else "Planner decided to delete '%v'"). Components count too:
    // a child waits for its parent's delete (dependency_graph.go, DependenciesOf: "Include the
    // resource's parent, as the resource depends on it's parent existing.").
    const afterUrns = new Set(after.map((r) => r.urn));
    const condemned = new Map<RegisteredResource, string | undefined>();
    for (const r of before) {
        const key = keyOf(r);
        if (isComponent(r)) {
            if (!afterUrns.has(r.urn)) condemned.set(r, undefined);
        } else if (plan.get(key) === "delete") condemned.set(r, addStep("delete", key));
        else if (plan.get(key) === "replace" && !deletedEarly.has(key)) condemned.set(r, addStep("delete-replaced", key));
    }
    // ScheduleDeletes (step_generator.go): "Remove all resources with no outgoing edges from the graph
    // and add them to the current antichain", then "we reverse the list": dependents first. Only
    // direct edges between condemned resources count (`dg.DependenciesOf(res).Intersect(condemned)`).
    // performPostSteps runs the antichains one after another: "Each list of steps can safely be
    // executed in parallel, but each list must execute completes before the next list can safely
    // begin executing." (`tok := ex.stepExec.ExecuteParallel(antichain)`, `tok.Wait(ctx)`).
    const remaining = new Set(condemned.keys());
    const dependsOn = new Map(
        [...remaining].map((r) => {
            const deps = olds.dependencies(r, true);
            const parent = olds.parent.get(r);
            if (parent) deps.push(parent);
            return [r, deps] as const;
        }),
    );
    const antichains: RegisteredResource[][] = [];
    while (remaining.size > 0) {
        const layer = [...remaining].filter((r) => !dependsOn.get(r)!.some((d) => d !== r && remaining.has(d)));
        if (layer.length === 0) throw new Error("engineSchedule: the condemned resources' dependencies form a cycle");
        for (const r of layer) remaining.delete(r);
        antichains.push(layer);
    }
    antichains.reverse();
    let barrier = registrationsDone;
    antichains.forEach((layer, i) => {
        const next = graph.node(`antichain ${i + 1} done`);
        graph.edge(barrier, next);
        for (const r of layer) {
            const s = condemned.get(r);
            if (s === undefined) continue;
            graph.edge(barrier, s);
            graph.edge(s, next);
        }
        barrier = next;
    });

    const ordered = [...steps.values()];
    const known = (s: EngineStep) => {
        const id = stepId(s.op, s.key);
        if (!steps.has(id)) throw new Error(`engineSchedule: no step ${id}; the steps are:\n${describe(schedule).join("\n")}`);
        return id;
    };
    const schedule: Schedule = {
        steps: ordered,
        finishesBefore: (a, b) => graph.reachable(known(a)).has(known(b)),
        mayOverlap: (a, b) => known(a) !== known(b) && !schedule.finishesBefore(a, b) && !schedule.finishesBefore(b, a),
        step: (key, op) => ordered.find((s) => s.key === key && (op === undefined || s.op === op)),
    };
    return schedule;
}

/**
 * The schedule as text lines, for failure messages: the steps by wave (the longest chain of steps
 * before them), each with the steps it directly waits for.
 */
export function describe(schedule: Schedule): string[] {
    const { steps } = schedule;
    const name = (s: EngineStep) => `${s.op} ${s.key}`;
    const before = new Map(steps.map((s) => [s, steps.filter((p) => p !== s && schedule.finishesBefore(p, s))]));
    const wave = new Map<EngineStep, number>();
    const waveOf = (s: EngineStep): number => {
        if (!wave.has(s)) wave.set(s, Math.max(0, ...before.get(s)!.map((p) => waveOf(p) + 1)));
        return wave.get(s)!;
    };
    return [...steps]
        .sort((a, b) => waveOf(a) - waveOf(b) || name(a).localeCompare(name(b)))
        .map((s) => {
            const preds = before.get(s)!;
            const direct = preds.filter((p) => !preds.some((q) => q !== p && schedule.finishesBefore(p, q)));
            return `${waveOf(s)}. ${name(s)}${direct.length > 0 ? ` ← after ${direct.map(name).sort().join(", ")}` : ""}`;
        });
}
