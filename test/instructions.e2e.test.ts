// The edge's cost in instructions, against the committed figures: this project's config runs
// under callgrind as `npm run bench:instructions -- --quick` runs it (one NGINX process, the same
// traffic), and each of its four figures may exceed the committed one
// (bench/results/instructions.json) by at most 5%. A change that costs more fails here until the
// results are measured again and committed with it. Counts do not depend on how busy the machine
// is; they do depend on the binaries, which the failure message names.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { type InstructionCounts, measureInstructions, quickInstructionPlan, readResults, versions } from "../bench/instructions";
import { requiring, unlessInstalled } from "./support/requirements";

const tolerance = 0.05;
const figures = [
    "instructionsPerSession",
    "instructionsPerResumedSession",
    "instructionsPerMessage64",
    "instructionsPerMessage16k",
] as const;

describe(
    "instructions per session and per message, against the committed figures",
    requiring(unlessInstalled({ valgrind: "valgrind", callgrind_control: "valgrind" })),
    () => {
        const dir = mkdtempSync(join(tmpdir(), "wss-edge-instructions-test-"));
        after(() => rmSync(dir, { recursive: true, force: true }));

        it("wss-edge costs at most 5% more than bench/results/instructions.json says, in each figure", { timeout: 600_000 }, async () => {
            const committed = readResults()?.configs.find((c) => c.name === "wss-edge");
            assert.ok(committed, "bench/results/instructions.json has wss-edge's figures (npm run bench:instructions)");
            const [measured] = (await measureInstructions(["wss-edge"], quickInstructionPlan, dir)) as [InstructionCounts];
            const binaries = versions();
            const measuredWith = readResults()?.versions ?? {};
            const differ = Object.entries(binaries)
                .filter(([name, version]) => measuredWith[name] !== version)
                .map(([name, version]) => `${name} is ${version} here, ${measuredWith[name] ?? "unknown"} in the committed run`);
            for (const figure of figures) {
                const growth = measured[figure] / committed[figure] - 1;
                assert.ok(
                    growth <= tolerance,
                    `wss-edge's ${figure} grew ${(growth * 100).toFixed(1)}%, from ${committed[figure]} to ${measured[figure]}: if that is meant, ` +
                        `run \`npm run bench:instructions\` and commit bench/results/instructions.{json,md} with the change${differ.length > 0 ? ` (${differ.join("; ")})` : ""}`,
                );
            }
            assert.equal(measured.resumedFraction, 1, "every resumed session was resumed");
        });
    },
);
