// The commands a user types: `npm start` brings the edge up and prints its outputs, the smoke
// client passes against it (and fails, with a hint, against what is not a reachable edge), two
// stacks run side by side without touching each other, and Ctrl-C or a closed terminal leave no
// process behind.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpGet } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { stopDetachedStack } from "../local/localStack";
import { freePort } from "../local/ports";
import { childPids, commandLine, isAlive, terminatePid, waitUntil } from "../local/processes";
import { StateLock } from "../local/stateLock";
import { close, connect } from "../smoke/edgeClient";

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

/** A foreground `npm start`, its output so far, and the processes its outputs.json names. */
class Foreground {
    readonly child: ChildProcess;
    output = "";

    constructor(
        readonly state: string,
        readonly port: number,
        extra: string[] = [],
    ) {
        this.child = tsx(["local/cli.ts", "start", "--port", String(port), "--state", state, ...extra]);
        this.child.stdout!.on("data", (d) => (this.output += d));
        this.child.stderr!.on("data", (d) => (this.output += d));
        // Whatever the tests did (or skipped): a still-running start is stopped as a user would, and
        // anything a killed one left (its backends run detached) is stopped from its lock.
        after(async () => {
            if (this.child.exitCode === null && this.child.signalCode === null) {
                const exited = new Promise((resolve) => this.child.once("exit", resolve));
                this.child.kill("SIGINT");
                const timer = setTimeout(() => this.child.kill("SIGKILL"), 20000);
                await exited;
                clearTimeout(timer);
            }
            await stopDetachedStack(this.state);
        });
    }

    /** Resolves once the stack serves (at once if it already does); fails with its output if it exits first. */
    async ready(): Promise<void> {
        await waitUntil(
            30000,
            () => {
                if (this.child.exitCode !== null) throw new Error(`npm start exited ${this.child.exitCode}:\n${this.output}`);
                return this.output.includes("Ctrl-C stops the stack");
            },
            "npm start did not come up",
        );
    }

    get pids(): number[] {
        const outputs = JSON.parse(readFileSync(join(this.state, "outputs.json"), "utf8"));
        return [Number(readFileSync(outputs.nginxPidFile, "utf8")), ...outputs.backends.map((b: { pid: number }) => b.pid)];
    }

    async signal(signal: NodeJS.Signals): Promise<number | null> {
        const exited = new Promise<number | null>((resolve) => this.child.once("exit", (code) => resolve(code)));
        this.child.kill(signal);
        return exited;
    }
}

/** A plain-HTTP GET: its status and Location header. */
function plainGet(url: URL): Promise<{ status: number; location?: string }> {
    return new Promise((resolve, reject) => {
        httpGet(url, (response) => {
            response.resume();
            resolve({ status: response.statusCode ?? 0, location: response.headers.location });
        }).on("error", reject);
    });
}

const scratch = (name: string) => {
    const dir = mkdtempSync(join(tmpdir(), `wss-edge-${name}-`));
    // A stack a test left in it (its folder is its lock) is stopped before the folder goes.
    after(async () => {
        await stopDetachedStack(dir);
        rmSync(dir, { recursive: true, force: true });
    });
    return dir;
};

describe("npm start, the smoke client and Ctrl-C", async () => {
    const state = scratch("cli");
    const port = await freePort("127.0.0.1");
    const start = new Foreground(state, port, ["--set", "idleTimeoutSeconds=60"]);

    it("starts the stack in the foreground with the settings given, and prints the AWS stack's outputs", async () => {
        await start.ready();
        assert.match(start.output, new RegExp(`endpoint\\s+wss://localhost:${port}/`));
        assert.match(start.output, /healthUrl\s+https:\/\/localhost:\d+\/healthz/);
        assert.match(start.output, /caCertificatePem\s+\S+\/pki\/ca\.crt/);
        const outputs = JSON.parse(readFileSync(join(state, "outputs.json"), "utf8"));
        assert.equal(outputs.endpoint, `wss://localhost:${port}/`);
        assert.equal(outputs.backends.length, 3);
        assert.match(readFileSync(join(state, "edge", "current", "nginx.conf"), "utf8"), /proxy_read_timeout 60s;/);
    });

    it("writes its status line without terminal escapes when its output is not a terminal", async () => {
        await start.ready();
        await waitUntil(5000, () => /nginx \d+ {2}│ {2}backend-1 \d+ {2}│/.test(start.output), "a status line from the metrics");
        // biome-ignore lint/suspicious/noControlCharactersInRegex: an escape sequence is what must not be there.
        assert.doesNotMatch(start.output, /\x1b\[/);
    });

    it("passes the smoke test against it, and fails one against a port that is no edge", async () => {
        await start.ready();
        const passed = await run(["smoke/smoke.ts", `wss://localhost:${port}/`, "--ca", join(state, "pki", "ca.crt"), "--reconnects", "3"]);
        assert.equal(passed.code, 0, passed.output);
        assert.match(passed.output, /ok\s+sticky\s+3 reconnects, all on backend-\d/);
        const nothing = await freePort("127.0.0.1");
        const failed = await run(["smoke/smoke.ts", `wss://localhost:${nothing}/`, "--ca", join(state, "pki", "ca.crt")]);
        assert.equal(failed.code, 1);
        assert.match(failed.output, /FAIL\s+connect/);
    });

    it("tells a smoke user who dials the IP address to use the name, and one without --ca to pass it", async () => {
        await start.ready();
        const byAddress = await run(["smoke/smoke.ts", `wss://127.0.0.1:${port}/`, "--ca", join(state, "pki", "ca.crt")]);
        assert.equal(byAddress.code, 1);
        assert.match(byAddress.output, /hint: the edge refuses handshakes for names it does not serve.*wss:\/\/localhost:\d+\//);
        const withoutCa = await run(["smoke/smoke.ts", `wss://localhost:${port}/`]);
        assert.equal(withoutCa.code, 1);
        assert.match(withoutCa.output, /hint: .*pass --ca <caCertificatePem>/);
    });

    it("stops everything it started on Ctrl-C (SIGINT), leaving no process behind", async () => {
        await start.ready();
        const pids = start.pids;
        assert.ok(pids.every(isAlive));
        assert.equal(await start.signal("SIGINT"), 0);
        assert.deepEqual(pids.filter(isAlive), [], "no process left");
    });
});

describe("Ctrl-C while npm start is still starting", async () => {
    it("stops what the start had started (backends run detached from it) and frees the folder", async () => {
        const state = scratch("interrupted");
        const start = new Foreground(state, await freePort("127.0.0.1"));
        const seen = new Set<number>();
        after(() => Promise.all([...seen].map((pid) => terminatePid(pid, "SIGKILL", 2000))));
        const look = () => {
            for (const { pid } of StateLock.read(state)?.processes ?? []) seen.add(pid);
            return seen.size > 0;
        };
        await waitUntil(30000, look, `npm start started no process:\n${start.output}`);
        assert.doesNotMatch(start.output, /Ctrl-C stops the stack/, "interrupted before the stack was up");
        const watching = setInterval(look, 20);
        const code = await start.signal("SIGINT");
        clearInterval(watching);
        assert.equal(code, 0, start.output);
        assert.match(start.output, /stopped, no process left behind/);
        assert.deepEqual(
            [...seen].filter(isAlive).map((pid) => `${pid} ${commandLine(pid)}`),
            [],
            "no process of the start is left",
        );
        assert.equal(StateLock.read(state), undefined, "the folder is free");
    });
});

describe("two stacks in one clone", async () => {
    const [first, second] = [scratch("first"), scratch("second")];
    const [firstPort, secondPort] = [await freePort("127.0.0.1"), await freePort("127.0.0.1")];
    const a = new Foreground(first, firstPort);

    it("a second start in the first one's folder is refused and touches nothing of it", async () => {
        await a.ready();
        const pids = a.pids;
        const lock = readFileSync(join(first, "stack.lock"), "utf8");
        const master = readFileSync(join(first, "edge", "current", "nginx.conf"), "utf8");
        const refused = await run(["local/cli.ts", "up", "--port", String(secondPort), "--state", first]);
        assert.equal(refused.code, 1);
        assert.match(refused.output, new RegExp(`${first} belongs to a running stack \\(edge on port ${firstPort}.*--state ${first}-2`));
        assert.deepEqual(
            pids.filter((pid) => !isAlive(pid)),
            [],
            "every process of the first stack lives",
        );
        assert.equal(readFileSync(join(first, "stack.lock"), "utf8"), lock);
        assert.equal(readFileSync(join(first, "edge", "current", "nginx.conf"), "utf8"), master, "its config was not redeployed");
        assert.equal(
            (await run(["smoke/smoke.ts", `wss://localhost:${firstPort}/`, "--ca", join(first, "pki", "ca.crt"), "--reconnects", "0"]))
                .code,
            0,
        );
    });

    it("a second start on the first one's port fails and stops only what it started", async () => {
        await a.ready();
        const pids = a.pids;
        const refused = await run(["local/cli.ts", "up", "--port", String(firstPort), "--state", second]);
        assert.equal(refused.code, 1);
        assert.match(refused.output, new RegExp(`the edge port 127\\.0\\.0\\.1:${firstPort} is taken`));
        assert.deepEqual(
            pids.filter((pid) => !isAlive(pid)),
            [],
        );
        assert.equal(
            (await run(["smoke/smoke.ts", `wss://localhost:${firstPort}/`, "--ca", join(first, "pki", "ca.crt"), "--reconnects", "0"]))
                .code,
            0,
        );
    });

    it("runs beside it with its own folder and port, and each stops on its own", async () => {
        await a.ready();
        const up = await run(["local/cli.ts", "up", "--port", String(secondPort), "--state", second]);
        assert.equal(up.code, 0, up.output);
        const secondPids = JSON.parse(readFileSync(join(second, "stack.lock"), "utf8")).pids.slice(1) as number[];
        for (const [port, state] of [
            [firstPort, first],
            [secondPort, second],
        ] as const) {
            assert.equal(
                (await run(["smoke/smoke.ts", `wss://localhost:${port}/`, "--ca", join(state, "pki", "ca.crt"), "--reconnects", "0"])).code,
                0,
                `stack on ${port}`,
            );
        }
        const down = await run(["local/cli.ts", "down", "--state", second]);
        assert.equal(down.code, 0);
        assert.deepEqual(secondPids.filter(isAlive), [], "the second stack is gone");
        assert.ok(a.pids.every(isAlive), "the first stack is untouched");
        assert.equal(
            (await run(["smoke/smoke.ts", `wss://localhost:${firstPort}/`, "--ca", join(first, "pki", "ca.crt"), "--reconnects", "0"]))
                .code,
            0,
        );
    });

    it("stops everything when its terminal closes (SIGHUP), and frees its folder", async () => {
        await a.ready();
        const pids = a.pids;
        assert.equal(await a.signal("SIGHUP"), 0);
        assert.deepEqual(pids.filter(isAlive), []);
        assert.throws(() => readFileSync(join(first, "stack.lock")), /ENOENT/);
    });

    it("refuses an AWS placement setting by name", async () => {
        const refused = await run([
            "local/cli.ts",
            "up",
            "--port",
            String(secondPort),
            "--state",
            second,
            "--set",
            "backendInstanceType=t3.small",
        ]);
        assert.equal(refused.code, 1);
        assert.match(refused.output, /local:backendInstanceType = "t3\.small": places the AWS stack .*the local stack does not take it/);
    });
});

describe("npm run local:up -- --set proxyCount=2 --set httpRedirect=true, then local:down", async () => {
    const state = scratch("tier");
    const port = await freePort("127.0.0.1");

    it("runs two NGINX proxies behind HAProxy, redirects plain HTTP to the endpoint, admits the endpoint's own origin, and local:down leaves nothing running", async () => {
        const up = await run([
            "local/cli.ts",
            "up",
            "--port",
            String(port),
            "--state",
            state,
            "--set",
            "proxyCount=2",
            "--set",
            "httpRedirect=true",
        ]);
        after(() => run(["local/cli.ts", "down", "--state", state]));
        assert.equal(up.code, 0, up.output);
        const outputs = JSON.parse(readFileSync(join(state, "outputs.json"), "utf8"));
        assert.deepEqual(
            outputs.proxies.map((p: { name: string; pid: number; port: number }) => [p.name, typeof p.pid, typeof p.port]),
            [
                ["proxy-1", "number", "number"],
                ["proxy-2", "number", "number"],
            ],
        );
        const passed = await run(["smoke/smoke.ts", `wss://localhost:${port}/`, "--ca", join(state, "pki", "ca.crt"), "--reconnects", "3"]);
        assert.equal(passed.code, 0, passed.output);
        // Plain HTTP, through the front to a proxy, answers with the way to the endpoint.
        assert.match(outputs.httpUrl, /^http:\/\/localhost:\d+\/$/);
        assert.match(up.output, /httpUrl\s+http:\/\/localhost:\d+\/ \(redirects to the endpoint\)/);
        const redirect = await plainGet(new URL("/room?x=1", outputs.httpUrl));
        assert.equal(redirect.status, 301);
        assert.equal(redirect.location, `https://localhost:${port}/room?x=1`);
        // A page the endpoint served opens its socket from the endpoint's own origin, not a proxy's port.
        const fromOwnPage = await connect(`wss://localhost:${port}/`, {
            ca: readFileSync(join(state, "pki", "ca.crt"), "utf8"),
            headers: { Origin: `https://localhost:${port}` },
        });
        await close(fromOwnPage.socket);

        const masters = outputs.proxies.map((p: { pid: number }) => p.pid) as number[];
        const everything = [
            ...masters,
            ...masters.flatMap((pid) => childPids(pid)),
            ...outputs.processes.map((p: { pid: number }) => p.pid),
            ...outputs.backends.map((b: { pid: number }) => b.pid),
        ];
        assert.ok(everything.every(isAlive));
        assert.ok(
            outputs.processes.some((p: { command: string }) => p.command === "haproxy"),
            "the front is listed",
        );
        const down = await run(["local/cli.ts", "down", "--state", state]);
        assert.equal(down.code, 0, down.output);
        assert.match(down.output, /front \(HAProxy\)/);
        assert.deepEqual(everything.filter(isAlive), [], "no process of the stack is left");
        assert.throws(() => readFileSync(join(state, "stack.lock")), /ENOENT/);
    });
});
