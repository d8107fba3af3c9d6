// The deploy script the proxy VM runs, exercised against a live local edge: a good release goes
// live with a reload; a bad or interrupted one leaves the running config serving.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import WebSocket from "ws";
import { runScript, ScriptError, waitUntil } from "../local/processes";
import { releaseBundle } from "../plan/edgePlan";
import { close, echo } from "../smoke/edgeClient";
import { connectToEdge, SocketPool, startTestEdge } from "./support/localEdge";

describe("deploying a release with the deploy script", async () => {
    const stack = await startTestEdge({ settings: { backendCount: "2" } });
    const pool = new SocketPool();
    const edgeRoot = join(stack.stateDir, "edge");
    const current = () => readlinkSync(join(edgeRoot, "current"));
    const workers = (master: number) => readFileSync(`/proc/${master}/task/${master}/children`, "utf8").trim().split(/\s+/).map(Number);

    it("puts a valid new config live with a reload: same master, new workers, open sockets kept", async () => {
        const open = await pool.open(stack);
        const master = stack.nginxMasterPid()!;
        const before = current();
        const oldWorkers = workers(master);
        const output = await stack.reconfigure({ idleTimeoutSeconds: "120" });
        assert.match(output, /release \w+ is live/);
        assert.notEqual(current(), before);
        assert.match(readFileSync(join(edgeRoot, "current", "nginx.conf"), "utf8"), /proxy_read_timeout 120s;/);
        assert.equal(stack.nginxMasterPid(), master, "reloaded, not restarted");
        assert.ok(
            workers(master).some((pid) => !oldWorkers.includes(pid)),
            "new workers took over",
        );
        assert.equal(open.socket.readyState, WebSocket.OPEN);
        assert.equal((await echo(open.socket, "kept")).toString(), "kept");
        await close(open.socket);
    });

    it("refuses a config NGINX rejects: non-zero exit, NGINX's own error, the old release still current and serving", async () => {
        const open = await pool.open(stack);
        const before = current();
        const broken = stack
            .renderConfig()
            .replace("proxy_http_version 1.1;", "proxy_http_version 1.1;\n            proxy_bogus_directive on;");
        await assert.rejects(stack.deployConfig(broken), (error: Error) => {
            assert.ok(error instanceof ScriptError);
            assert.notEqual(error.exitCode, 0);
            assert.match(error.stderr, /\[emerg\] \d+#\d+: unknown directive "proxy_bogus_directive"/);
            assert.match(error.stderr, /the running config is unchanged/);
            return true;
        });
        assert.equal(current(), before);
        assert.equal(open.socket.readyState, WebSocket.OPEN);
        const fresh = await connectToEdge(stack);
        assert.equal((await echo(fresh.socket, "still serving")).toString(), "still serving");
        await Promise.all([close(fresh.socket), close(open.socket)]);
    });

    it("keeps the live release on a proxy of another platform than the release's (an old proxy an instance refresh is replacing), and says so", async () => {
        const open = await pool.open(stack);
        const before = current();
        const forDebian13 = releaseBundle(
            {
                nginxConfig: stack.renderConfig().replace("proxy_read_timeout", "proxy_send_timeout 61s;\n            proxy_read_timeout"),
                healthAgent: true,
                platform: "debian-13",
            },
            stack.certificates,
        );
        const output = await stack.deployBundle(forDebian13);
        assert.match(output, /this proxy runs debian-12 and the release is for debian-13: it keeps its live release until it is replaced/);
        assert.equal(current(), before);
        assert.equal((await echo(open.socket, "kept")).toString(), "kept");
        await close(open.socket);
    });

    it("on a new proxy with nothing live, leaves another platform's release out and waits for its own (a platform change's first boot)", async () => {
        const root = mkdtempSync(join(stack.stateDir, "fresh-"));
        const bundle = releaseBundle({ nginxConfig: stack.renderConfig(), healthAgent: false, platform: "debian-13" }, stack.certificates);
        const stdout = await runScript(join(__dirname, "..", "deploy", "deploy-edge-config.sh"), [], bundle, {
            WSS_EDGE_ROOT: root,
            WSS_EDGE_PLATFORM: "debian-12",
        });
        assert.match(
            stdout,
            /this proxy runs debian-12 and the release is for debian-13: nothing is live here until a release for debian-12 arrives/,
        );
        assert.equal(existsSync(join(root, "current")), false, "nothing went live");
    });

    it("refuses a bundle with an unsafe path before touching anything", async () => {
        const before = current();
        await assert.rejects(stack.deployBundle(`../../etc/passwd ${Buffer.from("x").toString("base64")}\n`), /unsafe path/);
        await assert.rejects(stack.deployBundle(""), /bundle: empty/);
        assert.equal(current(), before);
    });

    it("survives a deploy killed between staging and swap: the old release serves and the next deploy succeeds", async () => {
        const before = current();
        // An nginx that pauses during `nginx -t`, i.e. after staging and before the swap.
        const pausing = join(stack.stateDir, "nginx-pausing-at-test");
        const marker = join(stack.stateDir, "paused");
        writeFileSync(pausing, `#!/bin/sh\nif [ "$1" = "-t" ]; then touch "${marker}"; sleep 30; fi\nexec nginx "$@"\n`);
        chmodSync(pausing, 0o755);
        const deploy = spawn("bash", [join(__dirname, "..", "deploy", "deploy-edge-config.sh")], {
            env: { ...process.env, WSS_EDGE_ROOT: edgeRoot, NGINX_BIN: pausing },
            stdio: ["pipe", "ignore", "ignore"],
            detached: true,
        });
        // A release that differs from the current one, whatever the tests before left current.
        const changed = stack.renderConfig().replace(/proxy_read_timeout \d+s;/, "proxy_read_timeout 240s;");
        deploy.stdin.end(`nginx.conf ${Buffer.from(changed).toString("base64")}\n`);
        try {
            await waitUntil(5000, () => existsSync(marker), "the deploy did not reach nginx -t");
            assert.ok(
                readdirSync(join(edgeRoot, "releases")).some((name) => name.startsWith(".staging.")),
                "a staged release exists",
            );
        } finally {
            process.kill(-deploy.pid!, "SIGKILL");
        }
        await new Promise((resolve) => deploy.once("exit", resolve));
        assert.equal(current(), before, "the interrupted release never became current");
        const session = await connectToEdge(stack);
        await close(session.socket);

        const output = await stack.deploy();
        assert.match(output, /is live/);
        assert.ok(
            !readdirSync(join(edgeRoot, "releases")).some((name) => name.startsWith(".staging.")),
            "the leftover staging folder was cleared",
        );
    });
});
