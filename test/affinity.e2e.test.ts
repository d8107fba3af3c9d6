// Affinity modes and the origin policy, through real NGINX: which backend each socket reaches,
// which responses carry the affinity cookie, and which pages may open sockets at all.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LocalStack } from "../local/localStack";
import { close, type EdgeConnectOptions } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, getFromEdge, startTestEdge } from "./support/localEdge";

const cookiePattern = /^wss_affinity=([0-9a-f]{32}); Path=\/; Max-Age=86400; Secure; HttpOnly; SameSite=Lax$/;

/** The edge's own origin, which a page it served would send. */
const ownOrigin = (stack: LocalStack) => `https://localhost:${stack.edgeAddress.port}`;

/** Connects, notes the backend and the cookie the 101 set (if any), and closes. */
async function landing(stack: LocalStack, options: EdgeConnectOptions): Promise<{ backend: string; setCookie?: string }> {
    const { socket, hello, upgrade } = await connectToEdge(stack, options);
    await close(socket);
    return { backend: hello.backend, setCookie: upgrade.headers["set-cookie"]?.[0] };
}

/** A browser's visit: a page load, which gets the cookie, then its socket, with the cookie and its Origin. */
async function browserVisit(stack: LocalStack, from: string): Promise<{ cookie: string; backend: string }> {
    const page = await getFromEdge(stack, "/", { localAddress: from });
    const cookie = cookiePattern.exec(String(page?.headers["set-cookie"]?.[0]))?.[1];
    assert.ok(cookie, `the page load got the cookie: ${JSON.stringify(page?.headers["set-cookie"])}`);
    const { backend } = await landing(stack, {
        localAddress: from,
        headers: { Origin: ownOrigin(stack), Cookie: `wss_affinity=${cookie}` },
    });
    return { cookie, backend };
}

describe("affinity: cookie", async () => {
    const stack = await startTestEdge({ settings: { affinity: "cookie" } });

    it("issues the cookie on a page load: random, Secure, HttpOnly, SameSite, Path=/, a bounded Max-Age", async () => {
        const [a, b] = [await getFromEdge(stack, "/"), await getFromEdge(stack, "/")];
        assert.match(String(a?.headers["set-cookie"]?.[0]), cookiePattern);
        assert.notEqual(a?.headers["set-cookie"]?.[0], b?.headers["set-cookie"]?.[0], "each client gets its own");
    });

    it("lands a browser's first socket (cookie issued on the 101 itself) and every later one on the same backend, from any network", async () => {
        const first = await landing(stack, { localAddress: clientNetworkAddress(1100), headers: { Origin: ownOrigin(stack) } });
        const cookie = cookiePattern.exec(String(first.setCookie))?.[1];
        assert.ok(cookie, `the 101 set the cookie: ${first.setCookie}`);
        for (let n = 0; n < 8; n++) {
            // A phone moving between networks keeps its cookie, and with it its backend.
            const later = await landing(stack, {
                localAddress: clientNetworkAddress(1101 + n),
                headers: { Origin: ownOrigin(stack), Cookie: `wss_affinity=${cookie}` },
            });
            assert.equal(later.backend, first.backend, `reconnect ${n + 1} from another network`);
            assert.equal(later.setCookie, undefined, "no new cookie for a client that has one");
        }
    });

    it("spreads 300 browsers behind one NAT address evenly over the backends", async () => {
        const counts = new Map<string, number>();
        for (let i = 0; i < 300; i++) {
            const { backend } = await browserVisit(stack, clientNetworkAddress(1200));
            counts.set(backend, (counts.get(backend) ?? 0) + 1);
        }
        assert.equal(counts.size, 3, JSON.stringify([...counts]));
        for (const [backend, n] of counts) assert.ok(n >= 60 && n <= 140, `${backend} got ${n} of 300`);
    });

    it("keeps a native client that sends no cookie and no Origin on its address, and issues it none", async () => {
        const landed = [];
        for (let n = 0; n < 6; n++) landed.push(await landing(stack, { localAddress: clientNetworkAddress(1300) }));
        assert.equal(new Set(landed.map((l) => l.backend)).size, 1);
        assert.ok(landed.every((l) => l.setCookie === undefined));
    });

    it("treats a forged, malformed or oversized cookie as none: a fresh one replaces it", async () => {
        for (const forged of ["../../etc/passwd", "ZZZZ", `${"a".repeat(4000)}g`, '"quoted"']) {
            const { setCookie } = await landing(stack, {
                localAddress: clientNetworkAddress(1400),
                headers: { Origin: ownOrigin(stack), Cookie: `wss_affinity=${forged}` },
            });
            assert.match(String(setCookie), cookiePattern, forged.slice(0, 20));
        }
    });
});

describe("affinity: query parameter", async () => {
    const stack = await startTestEdge({ settings: { affinity: "query:room" } });
    const inRoom = (room: string, from: number) =>
        connectToEdge(stack, { localAddress: clientNetworkAddress(from), path: `/?room=${room}` });

    it("puts every socket of one room on one backend, whatever network each comes from", async () => {
        const landed = new Set<string>();
        for (let n = 0; n < 10; n++) {
            const { socket, hello } = await inRoom("lobby", 1500 + n);
            landed.add(hello.backend);
            await close(socket);
        }
        assert.equal(landed.size, 1);
    });

    it("spreads rooms over every backend, and keeps a socket without the parameter on its address", async () => {
        const landed = new Set<string>();
        for (let room = 0; room < 60; room++) {
            const { socket, hello } = await inRoom(`room-${room}`, 1600);
            landed.add(hello.backend);
            await close(socket);
        }
        assert.equal(landed.size, 3);
        const plain = [];
        for (let n = 0; n < 5; n++) plain.push(await landing(stack, { localAddress: clientNetworkAddress(1700) }));
        assert.equal(new Set(plain.map((l) => l.backend)).size, 1);
    });
});

describe("origin policy", async () => {
    const [own, any] = await Promise.all([
        startTestEdge({ settings: { backendCount: "1" } }),
        startTestEdge({ settings: { backendCount: "1", allowedOrigins: '["*"]' } }),
    ]);

    it("refuses a page of another origin with 403 before any backend sees it; its own origin and native clients pass", async () => {
        const before = (await own.backendSocketCounts())["backend-1"];
        await assert.rejects(connectToEdge(own, { headers: { Origin: "https://evil.example" } }), /answered 403/);
        await assert.rejects(connectToEdge(own, { headers: { Origin: "null" } }), /answered 403/, "a sandboxed or file:// page");
        assert.equal((await own.backendSocketCounts())["backend-1"], before);
        await close((await connectToEdge(own, { headers: { Origin: ownOrigin(own) } })).socket);
        await close((await connectToEdge(own)).socket);
    });

    it('lets every origin in with allowedOrigins ["*"]', async () => {
        await close((await connectToEdge(any, { headers: { Origin: "https://evil.example" } })).socket);
    });
});
