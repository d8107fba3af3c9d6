// The engine's step order (test/support/engineOrder.ts) on small synthetic programs: one test per
// rule read in the engine's source (docs/engine-rules.md), each asserting orderings both ways.
import assert from "node:assert/strict";
import { it, describe as suite } from "node:test";
import type { Action, Plan } from "./support/changePlan";
import { describe, type EngineStep, engineSchedule, type Schedule, type StepOp } from "./support/engineOrder";
import type { RegisteredResource } from "./support/pulumiProgram";

const cloud = "test:index:Thing";
const group = "wss-edge:test:Group";

interface Spec {
    dependsOn?: RegisteredResource[];
    parent?: RegisteredResource;
    deleteBeforeReplace?: boolean;
    type?: string;
    /** The URN's type chain, as the engine writes it (every ancestor's type); by default as the mocks do. */
    chain?: string;
}

/**
 * A registration as pulumiProgram captures it. Its URN names the parent's type as the mocks do
 * (@pulumi/pulumi runtime/mocks.js, newUrn): the stack's for a top-level resource.
 */
function res(name: string, spec: Spec = {}): RegisteredResource {
    const type = spec.type ?? cloud;
    const chain = spec.chain ?? `${spec.parent?.type ?? "pulumi:pulumi:Stack"}$${type}`;
    return {
        type,
        name,
        urn: `urn:pulumi:dev::wss-edge::${chain}::${name}`,
        inputs: {},
        secretInputs: new Set(),
        dependencies: (spec.dependsOn ?? []).map((d) => d.urn),
        aliases: [],
        parent: "",
        options: { protect: false, ignoreChanges: [], replaceOnChanges: [], deleteBeforeReplace: spec.deleteBeforeReplace ?? false },
    };
}

const k = (name: string, type = cloud) => `${type}::${name}`;
const planOf = (actions: Record<string, Action>): Plan => new Map(Object.entries(actions).map(([name, action]) => [k(name), action]));

/** The step, failing with the whole schedule when it is missing. */
function step(schedule: Schedule, name: string, op: StepOp): EngineStep {
    const found = schedule.step(k(name), op);
    assert.ok(found, `no step ${op} ${name} in:\n${describe(schedule).join("\n")}`);
    return found;
}

/** a finishes before b, and not the other way round. */
function assertBefore(schedule: Schedule, a: EngineStep, b: EngineStep): void {
    const text = `\n${describe(schedule).join("\n")}`;
    assert.ok(schedule.finishesBefore(a, b), `${a.op} ${a.key} should finish before ${b.op} ${b.key}${text}`);
    assert.ok(!schedule.finishesBefore(b, a), `${b.op} ${b.key} should not finish before ${a.op} ${a.key}${text}`);
    assert.ok(!schedule.mayOverlap(a, b), `${a.op} ${a.key} and ${b.op} ${b.key} should not overlap${text}`);
}

function assertOverlap(schedule: Schedule, a: EngineStep, b: EngineStep): void {
    const text = `\n${describe(schedule).join("\n")}`;
    assert.ok(schedule.mayOverlap(a, b), `${a.op} ${a.key} and ${b.op} ${b.key} should be free to overlap${text}`);
    assert.ok(!schedule.finishesBefore(a, b) && !schedule.finishesBefore(b, a), text);
}

suite("engine order: registrations (creates, updates, replacements' creates)", () => {
    it("a replacement creates the new resource, its dependent updates, and only then is the old one deleted", () => {
        const a = res("a");
        const b = res("b", { dependsOn: [a] });
        const plan = planOf({ a: "replace", b: "update" });
        const s = engineSchedule([a, b], [a, b], plan);
        const [created, updated, deleted] = [step(s, "a", "create-replacement"), step(s, "b", "update"), step(s, "a", "delete-replaced")];
        assertBefore(s, created, updated);
        assertBefore(s, updated, deleted);
        assertBefore(s, created, deleted);
        assert.deepEqual(s.steps.map((x) => `${x.op} ${x.key}`).sort(), [
            `create-replacement ${k("a")}`,
            `delete-replaced ${k("a")}`,
            `update ${k("b")}`,
        ]);
    });

    it("independent updates may overlap; a dependency forces its order", () => {
        const a = res("a");
        const b = res("b");
        const c = res("c", { dependsOn: [a] });
        const s = engineSchedule([a, b, c], [a, b, c], planOf({ a: "update", b: "update", c: "update (stop and start)" }));
        assertOverlap(s, step(s, "a", "update"), step(s, "b", "update"));
        assertOverlap(s, step(s, "b", "update"), step(s, "c", "update"));
        assertBefore(s, step(s, "a", "update"), step(s, "c", "update"));
    });

    it("a chain orders every link, transitively", () => {
        const a = res("a");
        const b = res("b", { dependsOn: [a] });
        const c = res("c", { dependsOn: [b] });
        const s = engineSchedule([], [a, b, c], planOf({ a: "create", b: "create", c: "create" }));
        assertBefore(s, step(s, "a", "create"), step(s, "b", "create"));
        assertBefore(s, step(s, "b", "create"), step(s, "c", "create"));
        assertBefore(s, step(s, "a", "create"), step(s, "c", "create"));
    });

    it("an unchanged resource in between still passes the wait on (it registers only after its dependencies)", () => {
        const a = res("a");
        const b = res("b", { dependsOn: [a] });
        const c = res("c", { dependsOn: [b] });
        const d = res("d");
        const e = res("e", { dependsOn: [d] });
        const s = engineSchedule([a, b, c, d, e], [a, b, c, d, e], planOf({ a: "update", b: "same", c: "update", d: "same", e: "update" }));
        assert.equal(s.step(k("b")), undefined, "a same resource has no step");
        assertBefore(s, step(s, "a", "update"), step(s, "c", "update"));
        assertOverlap(s, step(s, "a", "update"), step(s, "e", "update"));
    });

    it("dependsOn a component waits for the custom resources under it; a component's children wait for what it waits for", () => {
        const a = res("a");
        const comp = res("edge", { type: group, dependsOn: [a] });
        const x = res("edge-x", { parent: comp });
        const y = res("edge-y", { parent: comp, dependsOn: [x] });
        const after = res("after", { dependsOn: [comp] });
        const free = res("free");
        const all = [a, comp, x, y, after, free];
        const s = engineSchedule([], all, planOf({ a: "create", "edge-x": "create", "edge-y": "create", after: "create", free: "create" }));
        assertBefore(s, step(s, "a", "create"), step(s, "edge-x", "create"));
        assertBefore(s, step(s, "edge-x", "create"), step(s, "after", "create"));
        assertBefore(s, step(s, "edge-y", "create"), step(s, "after", "create"));
        assertOverlap(s, step(s, "free", "create"), step(s, "edge-x", "create"));
        assertOverlap(s, step(s, "free", "create"), step(s, "a", "create"));
    });

    it("among parents of one type, a child's is the one whose name prefixes its own", () => {
        const a = res("a");
        const first = res("edge-deploy", { type: group });
        const second = res("edge-deploy-2", { type: group, dependsOn: [a] });
        const secondScript = res("edge-deploy-2-script", { parent: second });
        const firstScript = res("edge-deploy-script", { parent: first });
        const s = engineSchedule(
            [],
            [a, first, second, secondScript, firstScript],
            planOf({ a: "create", "edge-deploy-2-script": "create", "edge-deploy-script": "create" }),
        );
        assertBefore(s, step(s, "a", "create"), step(s, "edge-deploy-2-script", "create"));
        assertOverlap(s, step(s, "a", "create"), step(s, "edge-deploy-script", "create"));
    });
});

suite("engine order: parents, derived from URNs", () => {
    it("a real URN's whole chain tells apart parents of one type", () => {
        const u = res("u");
        const left = res("left", { type: "wss-edge:test:Left", chain: "wss-edge:test:Left" });
        const right = res("right", { type: "wss-edge:test:Right", chain: "wss-edge:test:Right", dependsOn: [u] });
        const leftInner = res("inner-1", { type: group, chain: `wss-edge:test:Left$${group}` });
        const rightInner = res("inner-2", { type: group, chain: `wss-edge:test:Right$${group}` });
        const x = res("x", { chain: `wss-edge:test:Right$${group}$${cloud}` });
        const y = res("y", { chain: `wss-edge:test:Left$${group}$${cloud}` });
        const s = engineSchedule([], [u, left, right, leftInner, rightInner, x, y], planOf({ u: "create", x: "create", y: "create" }));
        assertBefore(s, step(s, "u", "create"), step(s, "x", "create"));
        assertOverlap(s, step(s, "u", "create"), step(s, "y", "create"));
    });
});

suite("engine order: delete-before-replace", () => {
    const a = (deleteBeforeReplace: boolean) => res("a", { deleteBeforeReplace });

    function scenario(dbr: boolean, providerAsks = false) {
        const oldA = a(false);
        const newA = a(dbr);
        const b = res("b", { dependsOn: [newA] });
        const c = res("c", { dependsOn: [newA] });
        const d = res("d");
        const before = [oldA, res("b", { dependsOn: [oldA] }), res("c", { dependsOn: [oldA] }), d];
        const plan = planOf({ a: "replace", b: "replace", c: "update", d: "update" });
        return engineSchedule(before, [newA, b, c, d], plan, { providerDeleteBeforeReplace: providerAsks ? [k("a")] : [] });
    }

    it("deletes the old resource, and first its replaced dependents, before creating the new one", () => {
        const s = scenario(true);
        const [delB, delA, newA, newB] = [
            step(s, "b", "delete-replaced"),
            step(s, "a", "delete-replaced"),
            step(s, "a", "create-replacement"),
            step(s, "b", "create-replacement"),
        ];
        assertBefore(s, delB, delA);
        assertBefore(s, delA, newA);
        assertBefore(s, newA, newB);
        assertBefore(s, newA, step(s, "c", "update"));
        // Not deferred to the end: an unrelated update may run while the old one is deleted.
        assertOverlap(s, step(s, "d", "update"), delA);
        assertOverlap(s, step(s, "d", "update"), delB);
        assert.equal(s.steps.filter((x) => x.op === "delete-replaced").length, 2, "each old resource is deleted once");
    });

    it("without it, the same change creates first and deletes both old resources after every registration", () => {
        const s = scenario(false);
        const [newA, newB, delA, delB] = [
            step(s, "a", "create-replacement"),
            step(s, "b", "create-replacement"),
            step(s, "a", "delete-replaced"),
            step(s, "b", "delete-replaced"),
        ];
        assertBefore(s, newA, delA);
        assertBefore(s, newB, delB);
        assertBefore(s, step(s, "d", "update"), delA);
        assertBefore(s, delB, delA); // the dependent's old half first
    });

    it("dependents replaced with it are deleted dependents first, down the chain, and once", () => {
        const [oldA, newA] = [a(false), a(true)];
        const oldB = res("b", { dependsOn: [oldA] });
        const newB = res("b", { dependsOn: [newA], deleteBeforeReplace: true });
        const s = engineSchedule(
            [oldA, oldB, res("b2", { dependsOn: [oldB] })],
            [newA, newB, res("b2", { dependsOn: [newB] })],
            planOf({ a: "replace", b: "replace", b2: "replace" }),
        );
        assertBefore(s, step(s, "b2", "delete-replaced"), step(s, "b", "delete-replaced"));
        assertBefore(s, step(s, "b", "delete-replaced"), step(s, "a", "delete-replaced"));
        assertBefore(s, step(s, "b", "create-replacement"), step(s, "b2", "create-replacement"));
        assertBefore(s, step(s, "b", "delete-replaced"), step(s, "a", "create-replacement"));
        assert.equal(s.steps.filter((x) => x.op === "delete-replaced").length, 3);
    });

    it("a resource registered before it is no dependent any more: its old half waits for the deletes", () => {
        const [oldA, newA] = [a(false), a(true)];
        const newC = res("c");
        const s = engineSchedule([oldA, res("c", { dependsOn: [oldA] })], [newC, newA], planOf({ a: "replace", c: "replace" }));
        assertBefore(s, step(s, "a", "create-replacement"), step(s, "c", "delete-replaced"));
        assertBefore(s, step(s, "c", "create-replacement"), step(s, "c", "delete-replaced"));
        assertOverlap(s, step(s, "c", "create-replacement"), step(s, "a", "delete-replaced"));
    });

    it("a provider that asks for it (an explicit auto-named `name`) gets the same order", () => {
        const s = scenario(false, true);
        assertBefore(s, step(s, "a", "delete-replaced"), step(s, "a", "create-replacement"));
        assertBefore(s, step(s, "b", "delete-replaced"), step(s, "a", "delete-replaced"));
    });
});

suite("engine order: deletes", () => {
    it("run in reverse dependency order, in antichains: a later layer waits for the whole earlier one", () => {
        const a = res("a");
        const b = res("b", { dependsOn: [a] });
        const c = res("c", { dependsOn: [b] });
        const d = res("d");
        const s = engineSchedule([a, b, c, d], [], planOf({ a: "delete", b: "delete", c: "delete", d: "delete" }));
        const [delA, delB, delC, delD] = ["a", "b", "c", "d"].map((n) => step(s, n, "delete"));
        assertBefore(s, delC, delB);
        assertBefore(s, delB, delA);
        // Antichains [c], [b], [a, d]: d has no dependency path to the others, yet waits for c and b.
        assertOverlap(s, delA, delD);
        assertBefore(s, delC, delD);
        assertBefore(s, delB, delD);
    });

    it("only edges between condemned resources count: a kept resource in between does not order them", () => {
        const z = res("z");
        const y = res("y", { dependsOn: [z] });
        const x = res("x", { dependsOn: [y] });
        const keptY = res("y");
        const s = engineSchedule([z, y, x], [keptY], planOf({ z: "delete", y: "update", x: "delete" }));
        assertOverlap(s, step(s, "x", "delete"), step(s, "z", "delete"));
        assertBefore(s, step(s, "y", "update"), step(s, "z", "delete"));
    });

    it("a removed component is a layer of its own: its children go before it, and so before its other layer-mates", () => {
        const comp = res("edge", { type: group });
        const child = res("edge-x", { parent: comp });
        const other = res("q");
        const plan = planOf({ "edge-x": "delete", q: "delete" });
        const gone = engineSchedule([comp, child, other], [], plan);
        assertBefore(gone, step(gone, "edge-x", "delete"), step(gone, "q", "delete"));
        const kept = engineSchedule([comp, child, other], [comp], plan);
        assertOverlap(kept, step(kept, "edge-x", "delete"), step(kept, "q", "delete"));
    });

    it("a layer of components alone still keeps the layers on either side apart", () => {
        const outer = res("g", { type: group });
        const inner = res("g-p", { type: group, parent: outer });
        const x = res("g-p-x", { parent: inner });
        const w = res("w");
        const s = engineSchedule([outer, inner, x, w], [], planOf({ "g-p-x": "delete", w: "delete" }));
        // Antichains [g-p-x], [g-p], [g, w].
        assertBefore(s, step(s, "g-p-x", "delete"), step(s, "w", "delete"));
    });

    it("an old replaced resource is deleted after every create and update of the deployment, with the removed ones", () => {
        const a = res("a");
        const b = res("b");
        const c = res("c", { dependsOn: [b] });
        const gone = res("gone");
        const n = res("n", { dependsOn: [c] });
        const s = engineSchedule(
            [a, b, c, gone],
            [a, b, c, n],
            planOf({ a: "replace", b: "update", c: "update", n: "create", gone: "delete" }),
        );
        const delA = step(s, "a", "delete-replaced");
        for (const [name, op] of [
            ["a", "create-replacement"],
            ["b", "update"],
            ["c", "update"],
            ["n", "create"],
        ] as const)
            assertBefore(s, step(s, name, op), delA);
        assertOverlap(s, delA, step(s, "gone", "delete"));
        assertOverlap(s, step(s, "a", "create-replacement"), step(s, "n", "create"));
    });
});

suite("engine order: an availability invariant, as the edge's tests will state it", () => {
    it("the Elastic IP moves only after the new VM's deploy finished, and the old VM goes last", () => {
        const eip = res("edge-ip");
        const vm = res("edge-proxy");
        const deploy = res("edge-deploy", { dependsOn: [vm] });
        const assoc = res("edge-ip-association", { dependsOn: [eip, vm, deploy] });
        const all = [eip, vm, deploy, assoc];
        const s = engineSchedule(
            all,
            all,
            planOf({ "edge-ip": "same", "edge-proxy": "replace", "edge-deploy": "replace", "edge-ip-association": "replace" }),
        );
        const moved = step(s, "edge-ip-association", "create-replacement");
        assertBefore(s, step(s, "edge-deploy", "create-replacement"), moved);
        assertBefore(s, moved, step(s, "edge-proxy", "delete-replaced"));
        // Old halves: association first, then the old deploy (its delete command runs on the old VM), then the VM.
        assertBefore(s, step(s, "edge-ip-association", "delete-replaced"), step(s, "edge-deploy", "delete-replaced"));
        assertBefore(s, step(s, "edge-deploy", "delete-replaced"), step(s, "edge-proxy", "delete-replaced"));
    });
});

suite("engine order: the helpers", () => {
    it("describe lists every step with what it waits for; an unknown step is refused", () => {
        const a = res("a");
        const b = res("b", { dependsOn: [a] });
        const s = engineSchedule([a, b], [a, b], planOf({ a: "replace", b: "update" }));
        const lines = describe(s);
        assert.equal(lines.length, s.steps.length);
        assert.deepEqual(lines, [
            `0. create-replacement ${k("a")}`,
            `1. update ${k("b")} ← after create-replacement ${k("a")}`,
            `2. delete-replaced ${k("a")} ← after update ${k("b")}`,
        ]);
        assert.throws(() => s.finishesBefore({ op: "delete", key: k("a") }, step(s, "b", "update")), /no step delete/);
        assert.equal(s.step(k("a"))?.op, "create-replacement");
        assert.equal(s.step(k("a"), "delete"), undefined);
    });
});
