// The commands a user types: `npm start` brings the edge up and prints its outputs, the smoke
// client passes against it (and fails against something that is not an edge), and Ctrl-C
// leaves no process behind.
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { freePort } from "../local/localStack";

const root = join(__dirname, "..");
const tsx = (args: string[]) => spawn(process.execPath, ["--import", "tsx", ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });

function run(args: string[]): Promise<{ code: number | null; output: string }> {
    return new Promise((resolve) => {
        const child = tsx(args);
        let output = "";
        child.stdout!.on("data", (d) => (output += d));
        child.stderr!.on("data", (d) => (output += d));
        child.on("close", (code) => resolve({ code, output }));
    });
}

const alive = (pid: number) => {
    try {
        process.kill(pid, 0);
        return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
        return false;
    }
};

describe("npm start, the smoke client and Ctrl-C", async () => {
    const state = mkdtempSync(join(tmpdir(), "wss-edge-cli-"));
    const port = await freePort("127.0.0.1");
    let start: ChildProcess | undefined;
    after(() => {
        if (start && start.exitCode === null) start.kill("SIGKILL");
        rmSync(state, { recursive: true, force: true });
    });

    it("starts the stack in the foreground and prints the AWS stack's outputs", async () => {
        start = tsx(["local/cli.ts", "start", "--port", String(port), "--state", state]);
        let output = "";
        start.stdout!.on("data", (d) => (output += d));
        start.stderr!.on("data", (d) => (output += d));
        for (let i = 0; i < 200 && !output.includes("Ctrl-C stops the stack"); i++) await new Promise((r) => setTimeout(r, 100));
        assert.match(output, new RegExp(`endpoint\\s+wss://localhost:${port}/`));
        assert.match(output, /healthUrl\s+https:\/\/localhost:\d+\/healthz/);
        assert.match(output, /caCertificatePem\s+\S+\/pki\/ca\.crt/);
        const outputs = JSON.parse(readFileSync(join(state, "outputs.json"), "utf8"));
        assert.equal(outputs.endpoint, `wss://localhost:${port}/`);
        assert.equal(outputs.backends.length, 3);
    });

    it("passes the smoke test against it, and fails one against a port that is no edge", async () => {
        const passed = await run(["smoke/smoke.ts", `wss://localhost:${port}/`, "--ca", join(state, "pki", "ca.crt"), "--reconnects", "3"]);
        assert.equal(passed.code, 0, passed.output);
        assert.match(passed.output, /ok\s+sticky\s+3 reconnects, all on backend-\d/);
        const nothing = await freePort("127.0.0.1");
        const failed = await run(["smoke/smoke.ts", `wss://localhost:${nothing}/`, "--ca", join(state, "pki", "ca.crt")]);
        assert.equal(failed.code, 1);
        assert.match(failed.output, /FAIL\s+connect/);
    });

    it("stops everything it started on Ctrl-C (SIGINT), leaving no process behind", async () => {
        const outputs = JSON.parse(readFileSync(join(state, "outputs.json"), "utf8"));
        const master = Number(readFileSync(outputs.nginxPidFile, "utf8"));
        const pids: number[] = [master, ...outputs.backends.map((b: { pid: number }) => b.pid)];
        assert.ok(pids.every(alive));
        const exited = new Promise<number | null>((resolve) => start!.once("exit", (code) => resolve(code)));
        start!.kill("SIGINT");
        assert.equal(await exited, 0);
        assert.deepEqual(pids.filter(alive), [], "no process left");
    });
});
