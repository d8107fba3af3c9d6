import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { type LocalStackOutputs, stopDetachedStack } from "../local/localStack";
import { childPids, commandLine, descendantPids, isAlive, terminatePid, waitUntil } from "../local/processes";

const repo = resolve(__dirname, "..");

describe("an interrupted bench (Ctrl-C)", () => {
    it("stops every process it started, the detached stack's too, and removes its scratch folder", async () => {
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
        const started: number[] = [];
        let stateDir = "";
        after(async () => {
            if (isAlive(bench.pid ?? 0)) bench.kill("SIGKILL");
            if (stateDir && existsSync(stateDir)) await stopDetachedStack(stateDir);
            // Waited on, so that none writes into the folder after it is removed.
            await Promise.all(started.map((pid) => terminatePid(pid, "SIGKILL", 2000)));
            rmSync(temp, { recursive: true, force: true });
        });

        await waitUntil(
            120000,
            () => {
                const scratch = readdirSync(temp).find((name) => name.startsWith("wss-edge-scale-"));
                stateDir = scratch ? join(temp, scratch, "scale-stack") : "";
                // The load generators start once the stack is up: wait for them too.
                const generating = descendantPids(bench.pid!).some((pid) => commandLine(pid).includes("loadClient"));
                return existsSync(join(stateDir, "outputs.json")) && generating;
            },
            `the bench did not bring its stack up:\n${output}`,
        );
        const outputs = JSON.parse(readFileSync(join(stateDir, "outputs.json"), "utf8")) as LocalStackOutputs;
        const master = Number(readFileSync(outputs.nginxPidFile, "utf8").trim());
        started.push(
            master,
            ...childPids(master),
            ...outputs.backends.map((b) => b.pid),
            ...(outputs.processes ?? []).map((p) => p.pid),
            ...descendantPids(bench.pid!),
        );
        // (The descendants include short-lived ones, e.g. the health agent's curl and sleep.)
        assert.ok(
            [master, ...outputs.backends.map((b) => b.pid)].every((pid) => isAlive(pid)),
            "NGINX and the backends run before the interruption",
        );

        bench.kill("SIGINT");
        let timer: NodeJS.Timeout | undefined;
        const code = await Promise.race([exited, new Promise<string>((done) => (timer = setTimeout(() => done("still running"), 90000)))]);
        clearTimeout(timer);

        assert.equal(code, 130, `the bench exits as interrupted:\n${output}`);
        assert.match(output, /SIGINT: stopping everything the bench started/);
        const left = [...new Set(started)].filter((pid) => isAlive(pid));
        assert.deepEqual(left, [], "no process the bench started is left running");
        // (tsx keeps its compile cache there too.)
        assert.deepEqual(
            readdirSync(temp).filter((name) => name.startsWith("wss-edge-")),
            [],
            "its scratch folder is removed",
        );
    });
});
