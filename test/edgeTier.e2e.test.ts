// The load-balanced edge's twin on this machine (`--set proxyCount=2`): HAProxy in TCP mode with
// PROXY protocol v2 in front of two NGINX proxies, each with its own prefix, config, workers and
// backend health agent. Real TLS, real WebSocket clients on loopback, each from its own /24.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { connect as tlsConnect } from "node:tls";
import WebSocket from "ws";
import type { LocalStack } from "../local/localStack";
import { httpGetText } from "../local/probes";
import { childPids, isAlive, sleep, waitUntil } from "../local/processes";
import { type BackendHello, close, type EdgeSession, echo } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, startTestEdge } from "./support/localEdge";

/** Client /24s of this file, apart from other files' (clientNetworkAddress(n) for n from here). */
let nextClient = 400;
const newClientAddress = () => clientNetworkAddress(nextClient++);

/** Connections NGINX of proxy `name` has accepted so far, from its exporter. */
async function acceptedBy(stack: LocalStack, name: string): Promise<number> {
    const url = stack.outputs.metrics.find((m) => m.name === `nginx-${name}`)?.url;
    assert.ok(url, `metrics of ${name}`);
    const match = /^nginx_connections_accepted (\d+)$/m.exec((await httpGetText(url)) ?? "");
    assert.ok(match, `nginx_connections_accepted of ${name}`);
    return Number(match[1]);
}

/**
 * A session straight to proxy port `port`, from `localAddress`, that opens with its own PROXY
 * protocol header claiming `claimed`: what a client would try to forge its address.
 */
function connectWithForgedHeader(stack: LocalStack, port: number, localAddress: string, claimed: string): Promise<BackendHello> {
    return new Promise((resolve, reject) => {
        const socket = new WebSocket(`wss://localhost:${port}/`, {
            createConnection: () => {
                const raw = tcpConnect({ host: "127.0.0.1", port, localAddress });
                raw.write(`PROXY TCP4 ${claimed} 127.0.0.1 40000 443\r\n`);
                return tlsConnect({ socket: raw, servername: "localhost", ca: stack.certificates.caCertificatePem });
            },
            handshakeTimeout: 5000,
        });
        socket.once("message", (data) => {
            resolve(JSON.parse(data.toString()) as BackendHello);
            socket.close();
        });
        socket.once("error", reject);
        socket.once("unexpected-response", (_req, res) => reject(new Error(`answered ${res.statusCode}`)));
    });
}

/** Connects from `localAddress` until a session opens (or `timeoutMs` passes), as a client's reconnect loop does. */
async function reconnect(stack: LocalStack, localAddress: string, timeoutMs: number): Promise<EdgeSession> {
    const started = Date.now();
    for (;;) {
        try {
            return await connectToEdge(stack, { localAddress, timeoutMs: 2000 });
        } catch (error) {
            if (Date.now() - started > timeoutMs) throw error;
            await sleep(100);
        }
    }
}

/** Two sessions from one client, one after the other (so through both proxies); `probeFirst` swaps their order. */
async function connectTwice(stack: LocalStack, client: string, probeFirst: boolean): Promise<[EdgeSession, EdgeSession]> {
    const first = await connectToEdge(stack, { localAddress: client });
    const second = await connectToEdge(stack, { localAddress: client });
    return probeFirst ? [second, first] : [first, second];
}

/** Whether an open session still reaches its backend (it echoes) or is being closed under it. */
function echoOrClose(session: EdgeSession): Promise<"open" | "closed"> {
    if (session.socket.readyState !== WebSocket.OPEN) return Promise.resolve("closed");
    return new Promise((resolve) => {
        session.socket.once("close", () => resolve("closed"));
        echo(session.socket, "still there?").then(
            () => resolve("open"),
            () => resolve("closed"),
        );
    });
}

describe("the load-balanced edge's twin: two proxies behind HAProxy", async () => {
    const stack = await startTestEdge({ settings: { proxyCount: "2" } });
    const held: EdgeSession[] = [];
    after(() => Promise.all(held.map((s) => close(s.socket))));

    it("lists both proxies (NGINX master PIDs and ports) and the front in outputs.json, and serves through the front", async () => {
        const outputs = JSON.parse(readFileSync(join(stack.stateDir, "outputs.json"), "utf8"));
        assert.deepEqual(
            outputs.proxies.map((p: { name: string }) => p.name),
            ["proxy-1", "proxy-2"],
        );
        for (const proxy of outputs.proxies) {
            assert.ok(isAlive(proxy.pid), `${proxy.name}'s master runs`);
            assert.match(readFileSync(`/proc/${proxy.pid}/cmdline`, "utf8"), /^nginx: master process/);
            assert.notEqual(proxy.port, stack.edgeAddress.port, "each proxy has a port of its own, behind the front");
        }
        assert.ok(outputs.processes.some((p: { command: string }) => p.command === "haproxy"));
        const session = await connectToEdge(stack, { localAddress: newClientAddress() });
        assert.match(session.hello.backend, /^backend-\d$/);
        await close(session.socket);
    });

    it("gives both proxies the same upstream and hashing; only ports and paths differ", () => {
        const [first, second] = stack.proxyNames().map((name) => readFileSync(join(stack.stateDir, name, "current", "nginx.conf"), "utf8"));
        const upstream = (config: string) => /upstream wss_backends \{[^}]*\}/.exec(config)?.[0];
        assert.ok(upstream(first));
        assert.equal(upstream(first), upstream(second));
        assert.match(first, /listen 127\.0\.0\.1:\d+ ssl proxy_protocol/);
        assert.match(first, /set_real_ip_from 127\.0\.0\.1;/);
    });

    it("lands a client on the same backend through either proxy, and the backend sees the client's own address", async () => {
        const client = newClientAddress();
        const before = await Promise.all(stack.proxyNames().map((name) => acceptedBy(stack, name)));
        const backends = new Set<string>();
        for (let i = 0; i < 6; i++) {
            const session = await connectToEdge(stack, { localAddress: client });
            backends.add(session.hello.backend);
            assert.equal(session.hello.headers["x-forwarded-for"], client);
            await close(session.socket);
        }
        const after = await Promise.all(stack.proxyNames().map((name) => acceptedBy(stack, name)));
        assert.ok(
            after.every((n, i) => n > before[i]),
            `both proxies served this client (accepted before ${before}, after ${after})`,
        );
        assert.equal(backends.size, 1, `one backend for one client whichever proxy: ${[...backends]}`);
    });

    it("believes a PROXY protocol header only from the front: a client that reaches a proxy directly keeps its own address", async () => {
        const client = newClientAddress();
        const hello = await connectWithForgedHeader(stack, stack.outputs.proxies[0].port, client, "198.51.100.1");
        assert.equal(hello.headers["x-forwarded-for"], client);
        assert.equal(hello.headers["x-real-ip"], client);
    });

    it("rolls a config change over both proxies under 1,000 open sockets: none closes, no new connection is refused", async () => {
        const clients = Array.from({ length: 10 }, () => newClientAddress());
        const sockets: EdgeSession[] = [];
        for (let i = 0; i < 1000; i += 50) {
            sockets.push(
                ...(await Promise.all(Array.from({ length: 50 }, (_, j) => connectToEdge(stack, { localAddress: clients[(i + j) % 10] })))),
            );
        }
        held.push(...sockets);
        const closed: number[] = [];
        for (const s of sockets) s.socket.once("close", (code) => closed.push(code));

        // New sessions keep arriving while the release rolls, each from a client of its own.
        let rolling = true;
        let opened = 0;
        const refused: string[] = [];
        const arrivals = (async () => {
            for (let n = 0; rolling && n < 2000; n++) {
                try {
                    const session = await connectToEdge(stack, { localAddress: clients[n % 10], timeoutMs: 5000 });
                    opened++;
                    await close(session.socket);
                } catch (error) {
                    refused.push((error as Error).message);
                }
            }
        })();
        const masters = stack.proxyNames().map((name) => stack.nginxMasterPid(name));
        try {
            await stack.reconfigure({ idleTimeoutSeconds: "240" });
            // A few more arrivals once both proxies run the new release, then the arrivals stop.
            const openedByTheEnd = opened;
            await waitUntil(20000, () => opened >= openedByTheEnd + 10 || refused.length > 0, "no new session after the roll");
        } finally {
            // Stopped even if the roll failed: no arrivals run on under the tests after this one.
            rolling = false;
            await arrivals;
        }

        for (const name of stack.proxyNames()) {
            assert.match(readFileSync(join(stack.stateDir, name, "current", "nginx.conf"), "utf8"), /proxy_read_timeout 240s;/, name);
        }
        assert.deepEqual(
            stack.proxyNames().map((name) => stack.nginxMasterPid(name)),
            masters,
            "reloaded, not restarted",
        );
        assert.ok(opened > 0, "new sessions opened during the roll");
        assert.deepEqual(refused, [], "no new connection refused");
        assert.deepEqual(closed, [], "no open socket closed");
        await Promise.all(sockets.map((s) => close(s.socket)));
    });

    describe("a frozen backend (SIGSTOP), with active health checks", () => {
        it("is marked down on both proxies: its clients are served elsewhere, the others' sockets stay open; after SIGCONT it gets its clients back", async (t) => {
            // A client that hashes to backend-2, and sockets held on the other backends.
            let client = "";
            const others: EdgeSession[] = [];
            for (let n = 0; n < 40 && (client === "" || others.length < 4); n++) {
                const address = newClientAddress();
                const session = await connectToEdge(stack, { localAddress: address });
                if (session.hello.backend === "backend-2" && client === "") {
                    client = address;
                    await close(session.socket);
                } else if (session.hello.backend !== "backend-2") {
                    others.push(session);
                } else {
                    await close(session.socket);
                }
            }
            assert.ok(client, "some client hashes to backend-2");
            held.push(...others);
            const closedOthers: number[] = [];
            for (const s of others) s.socket.once("close", (code) => closedOthers.push(code));

            const frozenPid = stack.outputs.backends.find((b) => b.name === "backend-2")?.pid ?? 0;
            assert.ok(isAlive(frozenPid), "backend-2 runs");
            process.kill(frozenPid, "SIGSTOP");
            try {
                const frozenAt = Date.now();
                // Until both agents have marked it down, a new session may wait on it (NGINX's connect timeout).
                let moved: EdgeSession | undefined;
                await waitUntil(
                    60000,
                    async () => {
                        const attempt = await connectToEdge(stack, { localAddress: client, timeoutMs: 1500 }).catch(() => undefined);
                        if (attempt && attempt.hello.backend !== "backend-2") moved = attempt;
                        else if (attempt) await close(attempt.socket);
                        if (!moved) return false;
                        // Served elsewhere at once through both proxies, not after a timeout on one of them.
                        const second = await connectToEdge(stack, { localAddress: client, timeoutMs: 1500 }).catch(() => undefined);
                        if (second) await close(second.socket);
                        if (second && second.hello.backend !== "backend-2") return true;
                        await close(moved.socket);
                        moved = undefined;
                        return false;
                    },
                    "sessions of the frozen backend's client were not served elsewhere",
                );
                const movedAfterMs = Date.now() - frozenAt;
                assert.ok(moved);
                await close(moved.socket);
                for (const name of stack.proxyNames())
                    assert.match(stack.backendHealthLog(name), /marked down after 2 failed checks/, name);
                assert.deepEqual(closedOthers, [], "the other backends' sockets stay open");
                for (const s of others) assert.equal(s.socket.readyState, WebSocket.OPEN);

                process.kill(frozenPid, "SIGCONT");
                const thawedAt = Date.now();
                await waitUntil(
                    30000,
                    async () => {
                        // Two in a row, so both proxies (the front round-robins) have taken it back, not just the first to check.
                        for (let i = 0; i < 2; i++) {
                            const attempt = await connectToEdge(stack, { localAddress: client, timeoutMs: 3000 }).catch(() => undefined);
                            if (attempt) await close(attempt.socket);
                            if (attempt?.hello.backend !== "backend-2") return false;
                        }
                        return true;
                    },
                    "the thawed backend did not get its client back",
                );
                t.diagnostic(
                    `served elsewhere ${movedAfterMs} ms after SIGSTOP; back on backend-2 ${Date.now() - thawedAt} ms after SIGCONT`,
                );
                for (const name of stack.proxyNames()) assert.match(stack.backendHealthLog(name), /is back after 2 good checks/, name);
            } finally {
                // Thawed whether the test passed or not (a second SIGCONT does nothing): later tests need backend-2.
                if (isAlive(frozenPid)) process.kill(frozenPid, "SIGCONT");
            }
        });
    });

    describe("a proxy killed abruptly (SIGKILL to its NGINX)", () => {
        it("its clients reconnect through the front and land on the same backends as before; the other proxy's sockets stay open", async (t) => {
            // Each client's backend, as both proxies agree on it (the front alternates them): a session
            // placed by a retry (a busy backend's slow handshake) would not say where its hash lands.
            const sessions: { client: string; session: EdgeSession }[] = [];
            for (let i = 0; i < 60; i++) {
                const client = newClientAddress();
                for (let attempt = 1; ; attempt++) {
                    // Probe first for every other client, so the sessions held are spread over both proxies.
                    const [session, probe] = await connectTwice(stack, client, i % 2 === 1);
                    await close(probe.socket);
                    if (probe.hello.backend === session.hello.backend) {
                        sessions.push({ client, session });
                        break;
                    }
                    await close(session.socket);
                    assert.ok(attempt < 5, `${client}: the proxies disagree on its backend 5 times in a row`);
                }
            }
            held.push(...sessions.map((s) => s.session));
            const dropped = new Set<string>();
            for (const { client, session } of sessions) session.socket.once("close", () => dropped.add(client));

            const master = stack.nginxMasterPid("proxy-1");
            assert.ok(master);
            const killedAt = Date.now();
            for (const pid of [master, ...childPids(master)]) process.kill(pid, "SIGKILL");
            await waitUntil(10000, () => dropped.size > 0, "no socket closed when its proxy died");
            // Which sockets went with proxy-1, by asking each: one through proxy-2 echoes, one through proxy-1 closes.
            await Promise.all(
                sessions.map(({ client, session }) => echoOrClose(session).then((fate) => fate === "closed" && dropped.add(client))),
            );

            assert.ok(dropped.size > 0 && dropped.size < sessions.length, `some, not all, sockets were on proxy-1: ${dropped.size}`);
            let slowest = 0;
            for (const { client, session } of sessions) {
                if (!dropped.has(client)) {
                    assert.equal(session.socket.readyState, WebSocket.OPEN, "sockets on proxy-2 stay open");
                    continue;
                }
                const again = await reconnect(stack, client, 15000);
                slowest = Math.max(slowest, Date.now() - killedAt);
                held.push(again);
                assert.equal(again.hello.backend, session.hello.backend, `${client} lands on the same backend`);
            }
            t.diagnostic(
                `${dropped.size} of ${sessions.length} sockets were on the killed proxy; all back within ${slowest} ms of the kill`,
            );
        });
    });
});
