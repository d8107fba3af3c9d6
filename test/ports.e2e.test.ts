// Ports for stacks started at the same time by different processes (two test files, two clones'
// test runs, a bench beside the tests): never the same one. A port is free when chosen and bound
// only later; NGINX binds with `reuseport`, so two edges given one port would both start and
// share each other's clients (and one stopping resets the other's pending connections).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, describe, it } from "node:test";

const root = join(__dirname, "..");
const perProcess = 300;

/** A process of its own that asks for `count` ports, prints them, and lives (holding them) until told to exit. */
function portsFromAnotherProcess(count: number): { ports: Promise<number[]>; exit: () => Promise<void> } {
    const script = `const { freePort } = require("./local/ports");
(async () => {
    const ports = [];
    for (let i = 0; i < ${count}; i++) ports.push(await freePort("127.0.0.1"));
    console.log(JSON.stringify(ports));
    process.stdin.resume().on("end", () => process.exit(0));
})();`;
    const child = spawn(process.execPath, ["--import", "tsx", "-e", script], { cwd: root, stdio: ["pipe", "pipe", "inherit"] });
    const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
    after(() => child.kill("SIGKILL"));
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    const ports = new Promise<number[]>((resolve, reject) => {
        child.stdout.on("data", () => output.endsWith("\n") && resolve(JSON.parse(output) as number[]));
        child.on("close", (code) => reject(new Error(`exited ${code} before printing its ports`)));
    });
    return {
        ports,
        exit: () => {
            child.stdin.end();
            return exited;
        },
    };
}

describe("free ports across processes", () => {
    it(`hands three processes asking at once ${perProcess} ports each, none of them twice`, async () => {
        const takers = [1, 2, 3].map(() => portsFromAnotherProcess(perProcess));
        const lists = await Promise.all(takers.map((t) => t.ports));
        await Promise.all(takers.map((t) => t.exit()));
        const all = lists.flat();
        assert.equal(all.length, 3 * perProcess);
        assert.equal(new Set(all).size, all.length, "a port was handed to two processes");
    });
});
