// Day two for real, on the local twin: a backend replaced and a backend certificate renewed
// under open sockets, with the same health gate script the AWS stack runs on the proxy.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import WebSocket from "ws";
import type { LocalStack } from "../local/localStack";
import { waitUntil } from "../local/processes";
import { type EdgeSession, echo } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, SocketPool, startTestEdge } from "./support/localEdge";

/** A socket and the client network it came from. */
interface Client {
    readonly session: EdgeSession;
    readonly address: string;
}

/** Opens `count` sockets, each from its own client network (a /24 of its own), 100 at a time. */
async function openFromDistinctNetworks(pool: SocketPool, stack: LocalStack, first: number, count: number): Promise<Client[]> {
    const clients: Client[] = [];
    for (let start = 0; start < count; start += 100) {
        const addresses = Array.from({ length: Math.min(100, count - start) }, (_, i) => clientNetworkAddress(first + start + i));
        clients.push(
            ...(await Promise.all(
                addresses.map(async (address) => ({ session: await pool.open(stack, { localAddress: address }), address })),
            )),
        );
    }
    return clients;
}

/**
 * Close times spread over a window of `seconds`: from the first to the last, at least half of it,
 * and no tenth of it holding more than a third of them (all at once would put every one in one).
 */
function assertSpread(times: readonly number[], seconds: number): void {
    const first = Math.min(...times);
    const span = Math.max(...times) - first;
    assert.ok(span >= (seconds * 1000) / 2, `closes spread over ${span} ms of a ${seconds} s window`);
    const bins = new Map<number, number>();
    for (const t of times) {
        const bin = Math.floor((t - first) / (seconds * 100));
        bins.set(bin, (bins.get(bin) ?? 0) + 1);
    }
    const busiest = Math.max(...bins.values());
    assert.ok(busiest <= times.length / 3, `${busiest} of ${times.length} closes within one tenth of the window`);
}

describe("replacing a backend under 1,000 open sockets", async () => {
    const closeSpreadSeconds = 4;
    const stack = await startTestEdge({ settings: { closeSpreadSeconds: String(closeSpreadSeconds) } });
    const pool = new SocketPool();

    it("loses no socket on the untouched backends, and the replaced one's clients are served by its successor", async () => {
        const clients = await openFromDistinctNetworks(pool, stack, 2000, 1000);
        const replacedClients = clients.filter((c) => c.session.hello.backend === "backend-2");
        const onReplaced = replacedClients.map((c) => c.session);
        const untouched = clients.filter((c) => c.session.hello.backend !== "backend-2").map((c) => c.session);
        assert.ok(
            onReplaced.length > 100 && untouched.length > 400,
            `spread: ${onReplaced.length} on backend-2, ${untouched.length} elsewhere`,
        );
        const oldPid = stack.outputs.backends.find((b) => b.name === "backend-2")!.pid;

        const { oldPort, newPort, pid } = await stack.replaceBackend("backend-2");
        assert.notEqual(newPort, oldPort);
        assert.notEqual(pid, oldPid);

        // The predecessor sends 1001 to each of its clients as it stops, spread over its window,
        // each with a reconnect hint of up to a second.
        await waitUntil(10000, () => onReplaced.every((s) => pool.closed.has(s.socket)), "every socket on the old backend-2 closed");
        assert.deepEqual(new Set(onReplaced.map((s) => pool.closed.get(s.socket))), new Set([1001]));
        const closings = onReplaced.map((s) => pool.closings.get(s.socket)!);
        for (const { reason } of closings) {
            const hint = /^backend stopping; retry-after-ms=(\d+)$/.exec(reason);
            assert.ok(hint && Number(hint[1]) < 1000, `a close reason with a hint under 1 s: ${JSON.stringify(reason)}`);
        }
        assert.ok(new Set(closings.map((c) => c.reason)).size > 10, "the hints differ");
        assertSpread(
            closings.map((c) => c.at),
            closeSpreadSeconds,
        );
        const lost = untouched.filter((s) => s.socket.readyState !== WebSocket.OPEN);
        assert.equal(lost.length, 0, `${lost.length} sockets closed on untouched backends`);
        const echoes = await Promise.all(untouched.map((s, i) => echo(s.socket, `still here ${i}`)));
        assert.ok(echoes.every((data, i) => data.toString() === `still here ${i}`));

        // Its clients come back from the same networks and land in the same ip_hash slot: the successor.
        const returning = await Promise.all(replacedClients.map((c) => pool.open(stack, { localAddress: c.address })));
        assert.deepEqual(new Set(returning.map((s) => s.hello.backend)), new Set(["backend-2"]));
        const counts = await stack.backendSocketCounts();
        assert.equal(counts["backend-2"], onReplaced.length, "the successor holds exactly the returning clients");
        assert.equal(stack.outputs.backends.find((b) => b.name === "backend-2")!.pid, pid);
    });

    it("keeps the old backend serving when its successor fails the health gate", async () => {
        const before = stack.outputs.backends.find((b) => b.name === "backend-3")!;
        const session = await pool.open(stack, { localAddress: clientNetworkAddress(3500) });
        // A new version of the app that dies at start.
        const broken = join(mkdtempSync(join(tmpdir(), "wss-edge-broken-app-")), "server.mjs");
        writeFileSync(broken, 'console.error("cannot read my settings"); process.exit(3);\n');
        after(() => rmSync(dirname(broken), { recursive: true, force: true }));
        await assert.rejects(
            stack.replaceBackend("backend-3", { entry: broken }),
            /backend backend-3 exited while starting; its log:\n[\s\S]*cannot read my settings/,
        );
        assert.deepEqual(
            stack.outputs.backends.find((b) => b.name === "backend-3"),
            before,
        );
        assert.equal(session.socket.readyState, WebSocket.OPEN);
        assert.equal((await echo(session.socket, "after a failed replacement")).toString(), "after a failed replacement");
    });
});

describe("renewing a backend certificate under open sockets", async () => {
    const stack = await startTestEdge();
    const pool = new SocketPool();

    it("keeps every socket open while new handshakes get the renewed certificate", async () => {
        const clients = await openFromDistinctNetworks(pool, stack, 4000, 300);
        const sessions = clients.map((c) => c.session);
        const renewedClients = clients.filter((c) => c.session.hello.backend === "backend-1");
        const onRenewed = renewedClients.map((c) => c.session);
        assert.ok(onRenewed.length > 0);
        const before = stack.certificates.backendCertificates.find((c) => c.name === "backend-1")!;

        const renewed = await stack.renewBackendCertificate("backend-1");
        assert.notEqual(new X509Certificate(renewed.certificatePem).serialNumber, new X509Certificate(before.certificatePem).serialNumber);

        assert.equal(sessions.filter((s) => s.socket.readyState !== WebSocket.OPEN).length, 0, "no socket closed");
        const echoes = await Promise.all(onRenewed.map((s, i) => echo(s.socket, `renewed ${i}`)));
        assert.ok(echoes.every((data, i) => data.toString() === `renewed ${i}`));
        // NGINX verifies the renewed certificate on its next connection to backend-1.
        const fresh = await connectToEdge(stack, { localAddress: renewedClients[0].address });
        assert.equal(fresh.hello.backend, "backend-1");
        pool.track(fresh);
    });
});

describe("an edge at its socket ceiling", async () => {
    const stack = await startTestEdge({ settings: { maxSockets: "5" } });
    const pool = new SocketPool();

    it("answers 503 to one more upgrade, keeps the sockets it holds, and admits again once one closes", async () => {
        const held = await Promise.all(
            Array.from({ length: 5 }, (_, i) => pool.open(stack, { localAddress: clientNetworkAddress(5000 + i) })),
        );
        await assert.rejects(connectToEdge(stack, { localAddress: clientNetworkAddress(5100) }), /answered 503 instead of 101/);
        assert.ok(held.every((s) => s.socket.readyState === WebSocket.OPEN));
        assert.equal((await echo(held[0].socket, "still served")).toString(), "still served");
        held[4].socket.close(1000);
        await waitUntil(
            5000,
            async () => {
                try {
                    pool.track(await connectToEdge(stack, { localAddress: clientNetworkAddress(5101) }));
                    return true;
                } catch {
                    return false;
                }
            },
            "a freed place admitted again",
        );
    });
});
