// Faults with known outcomes, on a live local edge: backends dying and coming back, NGINX
// reloaded again and again, a worker killed, certificates rotated.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { connect as tlsConnect } from "node:tls";
import WebSocket from "ws";
import { waitUntil } from "../local/processes";
import { close, echo } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, SocketPool, sleep, startTestEdge, whileBackendsStopped } from "./support/localEdge";

const liveWorkers = (master: number) =>
    readFileSync(`/proc/${master}/task/${master}/children`, "utf8")
        .trim()
        .split(/\s+/)
        .map(Number)
        .filter((pid) => {
            try {
                return /worker process$/.test(readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim());
            } catch {
                return false;
            }
        });

describe("backends failing", async () => {
    const stack = await startTestEdge();

    it("with every backend down, clients get a fast 502 before any upgrade, not a hang", async () => {
        // Each started again afterwards, whether the checks passed or not.
        await whileBackendsStopped(stack, stack.backendNames(), "SIGKILL", async () => {
            const started = Date.now();
            await assert.rejects(connectToEdge(stack, { timeoutMs: 10000 }), /answered 502 instead of 101/);
            const elapsed = Date.now() - started;
            assert.ok(elapsed < 2000, `failed after ${elapsed} ms; the 5 s connect timeout would mean a hang`);
        });
        const { socket } = await connectToEdge(stack);
        await close(socket);
    });

    it("a restarted backend gets its clients back within fail_timeout (10 s) and a margin", async () => {
        // A client network whose sessions hash to backend-1.
        let home: string | undefined;
        for (let n = 0; n < 30 && !home; n++) {
            const { socket, hello } = await connectToEdge(stack, { localAddress: clientNetworkAddress(700 + n) });
            if (hello.backend === "backend-1") home = clientNetworkAddress(700 + n);
            await close(socket);
        }
        assert.ok(home, "found a client network that lands on backend-1");
        // Started again by the test itself, or afterwards if the test fails before it does.
        await whileBackendsStopped(stack, ["backend-1"], "SIGKILL", async (restart) => {
            for (let i = 0; i < 4; i++) {
                const { socket, hello } = await connectToEdge(stack, { localAddress: home });
                assert.notEqual(hello.backend, "backend-1");
                await close(socket);
            }
            await restart("backend-1");
        });
        const restartedAt = Date.now();
        let back = false;
        while (!back && Date.now() - restartedAt < 15000) {
            const { socket, hello } = await connectToEdge(stack, { localAddress: home });
            back = hello.backend === "backend-1";
            await close(socket);
            if (!back) await sleep(500);
        }
        assert.ok(back, "the client network returned to backend-1 within fail_timeout and a margin");
    });
});

describe("NGINX under change", async () => {
    const stack = await startTestEdge();
    const pool = new SocketPool();

    it("reloads 20 times in a row under 1,000 open sockets without closing one", async () => {
        const sessions = [];
        for (let batch = 0; batch < 10; batch++) {
            sessions.push(
                ...(await Promise.all(
                    Array.from({ length: 100 }, (_, i) =>
                        pool.open(stack, { localAddress: clientNetworkAddress(800 + ((batch * 100 + i) % 60)) }),
                    ),
                )),
            );
        }
        for (let reload = 0; reload < 20; reload++) {
            // A real change each time, so every reload starts new workers.
            await stack.reconfigure({ idleTimeoutSeconds: String(300 + (reload % 2)) });
        }
        // Each deploy returned once its reload had taken effect; the echoes prove every socket works.
        assert.equal(sessions.filter((s) => s.socket.readyState !== WebSocket.OPEN).length, 0);
        const echoes = await Promise.all(sessions.map((s, i) => echo(s.socket, `after 20 reloads ${i}`)));
        assert.ok(echoes.every((data, i) => data.toString() === `after 20 reloads ${i}`));
        await pool.closeAll();
    });

    it("rotates the edge certificate: new handshakes get the new one, open sockets stay up", async () => {
        const serial = () =>
            new Promise<string>((resolve, reject) => {
                const socket = tlsConnect(
                    { ...stack.edgeAddress, servername: "localhost", ca: stack.certificates.caCertificatePem },
                    () => {
                        resolve(socket.getPeerCertificate().serialNumber);
                        socket.end();
                    },
                );
                socket.on("error", reject);
            });
        const open = await pool.open(stack);
        const before = await serial();
        await stack.rotateEdgeCertificates();
        const after = await serial();
        assert.notEqual(after, before);
        assert.equal(open.socket.readyState, WebSocket.OPEN);
        assert.equal((await echo(open.socket, "same socket, old certificate")).toString(), "same socket, old certificate");
        const fresh = await connectToEdge(stack);
        assert.equal(fresh.hello.peer, "wss-edge proxy", "the backends accept the renewed client certificate");
        await Promise.all([close(open.socket), close(fresh.socket)]);
    });
});

describe("an NGINX worker killed", async () => {
    const stack = await startTestEdge({ workerProcesses: 2 });

    it("is respawned by the master; only its sockets close, and they reconnect at once", async () => {
        const sessions = await Promise.all(
            Array.from({ length: 200 }, (_, i) => connectToEdge(stack, { localAddress: clientNetworkAddress(900 + (i % 50)) })),
        );
        try {
            const master = stack.nginxMasterPid()!;
            const [victim, survivor] = liveWorkers(master);
            assert.ok(victim && survivor, "two workers");
            process.kill(victim, "SIGKILL");
            // The kernel closes every socket of the dead worker at once: wait until the master has
            // started a new worker and the count of closed clients has held still for 250 ms.
            const closedNow = () => sessions.filter((s) => s.socket.readyState !== WebSocket.OPEN).length;
            let last = { count: -1, since: Date.now() };
            await waitUntil(
                5000,
                () => {
                    const count = closedNow();
                    if (count !== last.count) last = { count, since: Date.now() };
                    return count > 0 && Date.now() - last.since >= 250 && liveWorkers(master).length === 2;
                },
                "the victim's clients saw their close, and a new worker started",
            );
            const closed = sessions.filter((s) => s.socket.readyState !== WebSocket.OPEN);
            assert.ok(closed.length > 0 && closed.length < sessions.length, `${closed.length} of ${sessions.length} closed`);
            const respawned = liveWorkers(master);
            assert.equal(respawned.length, 2, "the master started a new worker");
            assert.ok(respawned.includes(survivor) && !respawned.includes(victim));
            const reconnected = await Promise.all(
                closed.map((_, i) => connectToEdge(stack, { localAddress: clientNetworkAddress(900 + (i % 50)) })),
            );
            assert.equal(reconnected.length, closed.length);
            await Promise.all(reconnected.map((s) => close(s.socket)));
            const open = sessions.filter((s) => s.socket.readyState === WebSocket.OPEN);
            const echoes = await Promise.all(open.map((s) => echo(s.socket, "untouched")));
            assert.ok(echoes.every((e) => e.toString() === "untouched"));
        } finally {
            await Promise.all(sessions.map((s) => close(s.socket)));
        }
    });
});
