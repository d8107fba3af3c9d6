// Ctrl-C in the middle of a bench: everything it started (detached stacks with NGINX, backends,
// agents and exporters; load generators) is stopped, its scratch folder removed, and it exits 130,
// wherever the interruption lands.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { stopDetachedStack } from "../local/localStack";
import { childPids, commandLine, descendantPids, isAlive, terminatePid, waitUntil } from "../local/processes";
import { StateLock } from "../local/stateLock";

const repo = resolve(__dirname, "..");

/** The moments an interruption lands at: each a check on the bench's stack folder and its processes. */
const moments: { readonly name: string; readonly reached: (stateDir: string, benchPid: number) => boolean }[] = [
    {
        name: "while its stack is starting (a backend runs, NGINX not yet)",
        reached: (stateDir) => (StateLock.read(stateDir)?.processes ?? []).length > 0 && !existsSync(join(stateDir, "outputs.json")),
    },
    {
        name: "once its load generators run against the stack",
        reached: (stateDir, benchPid) =>
            existsSync(join(stateDir, "outputs.json")) && descendantPids(benchPid).some((pid) => commandLine(pid).includes("loadClient")),
    },
];

describe("an interrupted bench (Ctrl-C)", () => {
    for (const moment of moments) {
        it(`stops every process it started and removes its scratch folder, interrupted ${moment.name}`, async () => {
            // The bench's scratch folder goes under a temp folder of this test's own, so it can be found.
            const temp = mkdtempSync(join(tmpdir(), "wss-edge-bench-interrupt-"));
            // The full scale step: 40 minutes of work, so the interruption always lands mid-run.
            const bench = spawn(process.execPath, ["--import", "tsx", "bench/scale.ts"], {
                cwd: repo,
                env: { ...process.env, TMPDIR: temp },
                stdio: ["ignore", "pipe", "pipe"],
            });
            let output = "";
            bench.stdout.on("data", (chunk) => (output += chunk));
            bench.stderr.on("data", (chunk) => (output += chunk));
            const exited = new Promise<number | null>((done) => bench.once("exit", (code) => done(code)));
            // Every process seen as the bench's, from its stack's lock and its process tree, until it exits.
            const seen = new Set<number>();
            let stateDir = "";
            const look = () => {
                const scratch = readdirSync(temp).find((name) => name.startsWith("wss-edge-scale-"));
                stateDir = scratch ? join(temp, scratch, "scale-stack") : "";
                for (const { pid } of (stateDir && StateLock.read(stateDir)?.processes) || []) {
                    seen.add(pid);
                    for (const child of childPids(pid)) seen.add(child);
                }
                for (const pid of descendantPids(bench.pid!)) seen.add(pid);
            };
            after(async () => {
                if (isAlive(bench.pid ?? 0)) bench.kill("SIGKILL");
                if (stateDir && existsSync(stateDir)) await stopDetachedStack(stateDir);
                // Waited on, so that none writes into the folder after it is removed.
                await Promise.all([...seen].map((pid) => terminatePid(pid, "SIGKILL", 2000)));
                rmSync(temp, { recursive: true, force: true });
            });

            await waitUntil(
                120000,
                () => {
                    look();
                    return stateDir !== "" && moment.reached(stateDir, bench.pid!);
                },
                `the bench did not get ${moment.name}:\n${output}`,
            );
            look();
            bench.kill("SIGINT");
            let timer: NodeJS.Timeout | undefined;
            const watching = setInterval(() => isAlive(bench.pid!) && look(), 50);
            const code = await Promise.race([
                exited,
                new Promise<string>((done) => (timer = setTimeout(() => done("still running"), 90000))),
            ]);
            clearTimeout(timer);
            clearInterval(watching);

            assert.equal(code, 130, `the bench exits as interrupted:\n${output}`);
            assert.match(output, /SIGINT: stopping everything the bench started/);
            assert.ok(seen.size > 0, "the bench had started processes");
            const left = [...seen].filter((pid) => isAlive(pid));
            assert.deepEqual(
                left.map((pid) => `${pid} ${commandLine(pid)}`),
                [],
                "no process the bench started is left running",
            );
            // (tsx keeps its compile cache there too.)
            assert.deepEqual(
                readdirSync(temp).filter((name) => name.startsWith("wss-edge-")),
                [],
                "its scratch folder is removed",
            );
        });
    }
});
