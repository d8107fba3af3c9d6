// The edge end to end on this machine: real NGINX from Debian, three real backends, real
// TLS on both legs, real WebSocket clients from many loopback source addresses.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { connect as tlsConnect } from "node:tls";
import WebSocket from "ws";
import { repositoryRoot } from "../local/localStack";
import { terminate, waitUntil } from "../local/processes";
import { backendServerName } from "../pki/pkiSpec";
import { selfSignedCertificate } from "../pki/selfSigned";
import { close, echo } from "../smoke/edgeClient";
import {
    clientNetworkAddress,
    connectToEdge,
    getFromEdge,
    SocketPool,
    sleep,
    startTestEdge,
    whileBackendsStopped,
} from "./support/localEdge";

describe("the local edge", async () => {
    const stack = await startTestEdge();
    const pool = new SocketPool();

    it("upgrades to WebSocket and the backend sees Upgrade, X-Forwarded-For, X-Real-IP and Host as NGINX set them", async () => {
        const { socket, hello, upgrade } = await pool.open(stack, {
            localAddress: "127.0.0.1",
            headers: { "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6" },
        });
        assert.equal(upgrade.statusCode, 101);
        assert.equal(hello.headers.upgrade, "websocket");
        assert.equal(hello.headers.connection, "upgrade");
        assert.equal(hello.headers["x-forwarded-for"], "127.0.0.1", "a client cannot forge its address");
        assert.equal(hello.headers["x-real-ip"], "127.0.0.1");
        assert.equal(hello.headers["x-forwarded-proto"], "https");
        assert.equal(hello.headers.host, "localhost", "$host: the requested name, lowercased, without the port");
        assert.equal(hello.peer, "wss-edge proxy", "the backend saw the proxy's client certificate");
        assert.equal((await echo(socket, "hello edge")).toString(), "hello edge");
        await close(socket);
    });

    it("answers /healthz itself with HSTS", async () => {
        const answer = await getFromEdge(stack, "/healthz");
        const status = answer?.status;
        const hsts = answer?.headers["strict-transport-security"];
        assert.equal(status, 200);
        assert.equal(hsts, "max-age=63072000");
    });

    it("keeps each client network on one backend across 5 reconnects, and spreads networks over all three", async () => {
        const landedBy = new Map<string, string>();
        for (let n = 0; n < 24; n++) {
            const localAddress = clientNetworkAddress(n);
            const seen = new Set<string>();
            for (let attempt = 0; attempt < 6; attempt++) {
                const { socket, hello } = await connectToEdge(stack, { localAddress });
                seen.add(hello.backend);
                await close(socket);
            }
            assert.equal(seen.size, 1, `${localAddress} moved between ${[...seen].join(", ")}`);
            landedBy.set(localAddress, [...seen][0]);
        }
        assert.deepEqual([...new Set(landedBy.values())].sort(), ["backend-1", "backend-2", "backend-3"]);
    });

    it("sends two addresses of one /24 to the same backend (ip_hash uses the first three octets)", async () => {
        for (const network of [1, 2, 3]) {
            const a = await connectToEdge(stack, { localAddress: `127.99.${network}.10` });
            const b = await connectToEdge(stack, { localAddress: `127.99.${network}.200` });
            assert.equal(a.hello.backend, b.hello.backend);
            await Promise.all([close(a.socket), close(b.socket)]);
        }
    });

    it("round-trips a 1 MiB binary message intact", async () => {
        const { socket } = await pool.open(stack, { localAddress: clientNetworkAddress(40) });
        const payload = randomBytes(1024 * 1024);
        const back = await echo(socket, payload);
        assert.equal(back.length, payload.length);
        assert.ok(back.equals(payload));
        await close(socket);
    });

    it("holds 1,000 concurrent sockets that all get their echo", async () => {
        const sessions = [];
        for (let batch = 0; batch < 10; batch++) {
            sessions.push(
                ...(await Promise.all(
                    Array.from({ length: 100 }, (_, i) =>
                        connectToEdge(stack, { localAddress: clientNetworkAddress(100 + ((batch * 100 + i) % 50)) }),
                    ),
                )),
            );
        }
        try {
            assert.equal(sessions.length, 1000);
            const echoes = await Promise.all(sessions.map((s, i) => echo(s.socket, `socket ${i}`)));
            assert.ok(echoes.every((data, i) => data.toString() === `socket ${i}`));
            const counts = await stack.backendSocketCounts();
            // Sockets of earlier tests may still be finishing their close: at least ours are there.
            assert.ok(Object.values(counts).reduce((a, b) => (a ?? 0) + (b ?? 0), 0)! >= 1000, JSON.stringify(counts));
        } finally {
            await Promise.all(sessions.map((s) => close(s.socket)));
        }
    });

    it("keeps 200 open sockets through a reload that adds a fourth backend (but those rebalancing then moves, with 1012)", async () => {
        const sessions = await Promise.all(
            Array.from({ length: 200 }, (_, i) => pool.open(stack, { localAddress: clientNetworkAddress(300 + (i % 40)) })),
        );
        const added = await stack.addBackend();
        await stack.waitForBackend(added);
        // The deploy returns once the reload took effect (old workers shutting down); an echo on
        // every socket then proves each one still carries traffic.
        await stack.deploy();
        // The deploy tells the backends the new fleet: over rebalanceSeconds they move the sockets
        // whose key now hashes to the fourth (1012). Nothing else closes.
        const closedOtherwise = sessions.filter((s) => pool.closed.has(s.socket) && pool.closed.get(s.socket) !== 1012);
        assert.equal(closedOtherwise.length, 0);
        const open = sessions.filter((s) => s.socket.readyState === WebSocket.OPEN);
        const echoes = await Promise.all(open.map((s, i) => echo(s.socket, `after reload ${i}`).catch(() => undefined)));
        assert.ok(
            echoes.every((data, i) =>
                data === undefined ? pool.closed.get(open[i].socket) === 1012 : data.toString() === `after reload ${i}`,
            ),
        );
        assert.match(stack.renderConfig(), new RegExp(`server 127\\.0\\.0\\.1:${stack.backendAddress(added).port} `));
        const landed = new Set<string>();
        for (let n = 0; n < 24; n++) {
            const { socket, hello } = await connectToEdge(stack, { localAddress: clientNetworkAddress(500 + n) });
            landed.add(hello.backend);
            await close(socket);
        }
        assert.ok(landed.has(added), `new sessions reach ${added} after the reload`);
        await Promise.all(sessions.map((s) => close(s.socket)));
    });

    it("a backend stopping on SIGTERM says goodbye with close code 1001 to each of its clients", async () => {
        const sessions = await Promise.all(
            Array.from({ length: 30 }, (_, n) => pool.open(stack, { localAddress: clientNetworkAddress(450 + n) })),
        );
        const leaving = sessions[0].hello.backend;
        const theirs = sessions.filter((s) => s.hello.backend === leaving);
        const codes = theirs.map((s) => new Promise<number>((resolve) => s.socket.once("close", (code) => resolve(code))));
        // Started again afterwards, whether the goodbyes came or not: later tests need every backend.
        await whileBackendsStopped(stack, [leaving], "SIGTERM", async () => {
            assert.deepEqual([...new Set(await Promise.all(codes))], [1001]);
        });
        await Promise.all(sessions.filter((s) => s.hello.backend !== leaving).map((s) => close(s.socket)));
    });

    it("moves a killed backend's clients to live backends within 2 s and leaves the others untouched", async () => {
        const sessions = await Promise.all(
            Array.from({ length: 60 }, (_, n) => pool.open(stack, { localAddress: clientNetworkAddress(600 + n) })),
        );
        const victim = sessions[0].hello.backend;
        const hit = sessions.filter((s) => s.hello.backend === victim);
        const spared = sessions.filter((s) => s.hello.backend !== victim);
        assert.ok(hit.length > 0 && spared.length > 0);

        const killedAt = Date.now();
        const moved = hit.map(async (s, i) => {
            await new Promise((resolve) =>
                s.socket.readyState === WebSocket.CLOSED ? resolve(undefined) : s.socket.once("close", resolve),
            );
            const again = await connectToEdge(stack, {
                localAddress: s.socket.url ? clientNetworkAddress(600 + sessions.indexOf(s)) : undefined,
            });
            const elapsed = Date.now() - killedAt;
            await close(again.socket);
            return { backend: again.hello.backend, elapsed, i };
        });
        // Started again afterwards, whether the checks passed or not: later tests need every backend.
        await whileBackendsStopped(stack, [victim], "SIGKILL", async () => {
            const results = await Promise.all(moved);
            for (const r of results) {
                assert.notEqual(r.backend, victim);
                assert.ok(r.elapsed < 2000, `reconnected after ${r.elapsed} ms`);
            }
            assert.ok(
                spared.every((s) => s.socket.readyState === WebSocket.OPEN),
                "clients of live backends stay connected",
            );
            const echoes = await Promise.all(spared.map((s) => echo(s.socket, "still here")));
            assert.ok(echoes.every((e) => e.toString() === "still here"));
        });
    });
});

describe("mutual TLS between the edge and the backends", async () => {
    const stack = await startTestEdge({ settings: { backendCount: "1" } });

    it("a backend refuses a client without the proxy's client certificate", async () => {
        const backend = stack.backendAddress("backend-1");
        const url = `wss://${backend.host}:${backend.port}/`;
        const refused = await new Promise<string>((resolve) => {
            const socket = new WebSocket(url, {
                ca: stack.certificates.caCertificatePem,
                servername: backendServerName,
            } as WebSocket.ClientOptions);
            socket.once("open", () => resolve("open"));
            socket.once("error", (e) => resolve(`error: ${e.message}`));
        });
        assert.match(refused, /^error: /);
        const { certificatePem, privateKeyPem } = stack.certificates.proxyClientCertificate;
        const accepted = await new Promise<string>((resolve) => {
            const socket = new WebSocket(url, {
                ca: stack.certificates.caCertificatePem,
                servername: backendServerName,
                cert: certificatePem,
                key: privateKeyPem,
            } as WebSocket.ClientOptions);
            socket.once("open", () => {
                socket.close();
                resolve("open");
            });
            socket.once("error", (e) => resolve(`error: ${e.message}`));
        });
        assert.equal(accepted, "open", "the same backend admits the proxy's certificate");
    });

    it("resumes each worker's TLS 1.2 session with the backend, so new sockets skip the full handshake", async () => {
        const resumed: boolean[] = [];
        for (let i = 0; i < 8; i++) {
            const { socket, hello } = await connectToEdge(stack);
            assert.equal(hello.tls?.protocol, "TLSv1.2");
            resumed.push(hello.tls!.resumed);
            await close(socket);
        }
        // Each of the two workers keeps its own session; only its first connection may be a full handshake.
        assert.ok(
            resumed.filter((r) => !r).length <= 2,
            `full handshakes to the backend: ${resumed.map((r) => (r ? "resumed" : "full")).join(", ")}`,
        );
    });

    it("speaks TLS 1.3 to the backends when backendTlsProtocol says so", async () => {
        const tls13 = await startTestEdge({ settings: { backendCount: "1", backendTlsProtocol: "TLSv1.3" } });
        const { socket, hello } = await connectToEdge(tls13);
        assert.equal(hello.tls?.protocol, "TLSv1.3");
        assert.equal((await echo(socket, "over TLS 1.3")).toString(), "over TLS 1.3");
        await close(socket);
    });

    it("a backend stops resuming a session once TLS_SESSION_SECONDS have passed", async () => {
        // The first ticket-key change comes 2 s after start; the first two dials are well inside it.
        const backend = await startLoneBackend(join(stack.stateDir, "backends", "backend-1"), { TLS_SESSION_SECONDS: "2" });
        try {
            const { certificatePem, privateKeyPem } = stack.certificates.proxyClientCertificate;
            const dial = (session?: Buffer) =>
                new Promise<{ resumed: boolean; session: Buffer }>((resolve, reject) => {
                    const socket = tlsConnect({
                        host: "127.0.0.1",
                        port: backend.port,
                        servername: backendServerName,
                        ca: stack.certificates.caCertificatePem,
                        cert: certificatePem,
                        key: privateKeyPem,
                        maxVersion: "TLSv1.2",
                        session,
                    });
                    socket.once("secureConnect", () => {
                        resolve({ resumed: socket.isSessionReused(), session: socket.getSession()! });
                        socket.end();
                    });
                    socket.once("error", reject);
                });
            const first = await dial();
            const issuedAt = Date.now();
            assert.equal((await dial(first.session)).resumed, true, "resumed within the session's lifetime");
            // Sessions expire after 2 s and the ticket key changes every 2 s: by 2 × 2 s + 1 s at the
            // latest, the first session must be refused.
            await waitUntil(
                5000,
                async () => !(await dial(first.session)).resumed,
                "a session older than TLS_SESSION_SECONDS was still resumed",
            );
            assert.ok(Date.now() - issuedAt >= 1500, "refused only once its lifetime had passed");
        } finally {
            await backend.stop();
        }
    });

    it("NGINX refuses a backend whose certificate is not from the CA: the client sees a failure, never the impostor", async () => {
        const impostor = await startImpostor(stack);
        try {
            await stack.deployConfig(stack.renderConfig([{ address: "127.0.0.1", port: impostor.port }]));
            await assert.rejects(connectToEdge(stack), /answered 502/);
            assert.equal(impostor.upgrades(), 0, "the impostor never got a WebSocket");
        } finally {
            await impostor.stop();
            await stack.deploy();
        }
        const { socket, hello } = await connectToEdge(stack);
        assert.equal(hello.backend, "backend-1");
        await close(socket);
    });
});

describe("idle sockets", async () => {
    // The shortest idle timeout the settings allow, with and without backend pings.
    const [pinging, silent] = await Promise.all([
        startTestEdge({ settings: { backendCount: "1", idleTimeoutSeconds: "10" }, pingIntervalSeconds: 2 }),
        startTestEdge({ settings: { backendCount: "1", idleTimeoutSeconds: "10" }, pingIntervalSeconds: 0 }),
    ]);

    it("stay open past the read timeout while the backend pings, and close at it when it does not", async () => {
        const idleMs = 10 * 1000;
        const [kept, dropped] = await Promise.all([connectToEdge(pinging), connectToEdge(silent)]);
        const openedAt = Date.now();
        const droppedAfter = new Promise<number>((resolve) => dropped.socket.once("close", () => resolve(Date.now() - openedAt)));
        const elapsed = await Promise.race([droppedAfter, sleep(idleMs + 3000).then(() => Infinity)]);
        assert.ok(
            elapsed >= idleMs - 500 && elapsed <= idleMs + 2500,
            `the silent socket closed after ${elapsed} ms, not at the ${idleMs / 1000} s timeout`,
        );
        assert.equal(kept.socket.readyState, WebSocket.OPEN, "the pinged socket outlived proxy_read_timeout");
        assert.equal((await echo(kept.socket, "awake")).toString(), "awake");
        await close(kept.socket);
    });
});

/** backend/server.mjs on a free port of its own, with the certificates in `tlsDir`. */
async function startLoneBackend(tlsDir: string, env: Record<string, string>): Promise<{ port: number; stop: () => Promise<void> }> {
    const child = spawn(process.execPath, [join(repositoryRoot, "backend", "server.mjs")], {
        env: { ...process.env, ...env, BACKEND_NAME: "lone", HOST: "127.0.0.1", PORT: "0", TLS_DIR: tlsDir, METRICS_PORT: "0" },
        stdio: ["ignore", "pipe", "inherit"],
    });
    const stop = () => terminate(child, "SIGTERM");
    try {
        const exited = once(child, "exit").then(([code]) => Promise.reject(new Error(`backend exited with ${code} before listening`)));
        const [line] = (await Promise.race([once(createInterface({ input: child.stdout! }), "line"), exited])) as [string];
        return { port: (JSON.parse(line) as { port: number }).port, stop };
    } catch (error) {
        await stop();
        throw error;
    }
}

/** A WSS backend with a certificate from a CA the edge does not trust, counting upgrades. */
async function startImpostor(
    stack: Awaited<ReturnType<typeof startTestEdge>>,
): Promise<{ port: number; upgrades: () => number; stop: () => Promise<void> }> {
    const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { createServer } = await import("node:https");
    const dir = mkdtempSync(join(tmpdir(), "wss-edge-impostor-"));
    selfSignedCertificate(dir, backendServerName, `DNS:${backendServerName}`);
    const server = createServer({
        cert: readFileSync(join(dir, "cert.pem")),
        key: readFileSync(join(dir, "key.pem")),
        ca: stack.certificates.caCertificatePem,
        requestCert: true,
        rejectUnauthorized: true,
    });
    const sockets = new WebSocket.Server({ server });
    let upgrades = 0;
    sockets.on("connection", (socket) => {
        upgrades++;
        socket.send(JSON.stringify({ type: "hello", backend: "impostor", headers: {}, peer: null }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    return {
        port,
        upgrades: () => upgrades,
        stop: async () => {
            sockets.close();
            await new Promise((resolve) => server.close(resolve));
            rmSync(dir, { recursive: true, force: true });
        },
    };
}
