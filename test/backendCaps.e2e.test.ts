// Per-backend capacity (backendMaxSockets) through the local stack's real NGINX, in every
// affinity mode: a full backend is skipped and its overflow lands on the next backend of the
// key's hash order, the cap holds across NGINX's workers, a key comes home once there is room,
// and with every backend full a new socket is refused.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { waitUntil } from "../local/processes";
import { close, type EdgeSession } from "../smoke/edgeClient";
import { connectToEdge, startTestEdge } from "./support/localEdge";

const cap = 10;
const backendCount = 3;

/** Sockets per backend, by the hello each got. */
function perBackend(sessions: readonly EdgeSession[]): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const s of sessions) counts[s.hello.backend] = (counts[s.hello.backend] ?? 0) + 1;
    return counts;
}

describe("per-backend capacity (backendMaxSockets)", async () => {
    // Two workers: a cap counted per worker would let each backend take twice as many.
    const stack = await startTestEdge({
        workerProcesses: 2,
        settings: { backendMaxSockets: String(cap), backendCount: String(backendCount) },
    });

    /** The same key `count` times, one socket after another: what opened, and the refusals. */
    async function openSameKey(count: number, options: (i: number) => Parameters<typeof connectToEdge>[1]) {
        const opened: EdgeSession[] = [];
        const refused: string[] = [];
        for (let i = 0; i < count; i++) {
            try {
                opened.push(await connectToEdge(stack, options(i)));
            } catch (error) {
                refused.push((error as Error).message);
            }
        }
        return { opened, refused };
    }

    async function closeAll(sessions: readonly EdgeSession[]): Promise<void> {
        await Promise.all(sessions.map((s) => close(s.socket)));
        await waitUntil(
            10000,
            async () => {
                const counts = (await stack.metricsSnapshot()).backends;
                return Object.values(counts).every((n) => n === 0);
            },
            "the backends saw their sockets close",
        );
    }

    const modes = [
        // One client network (one /24): ip_hash gives all of them one slot.
        { affinity: "client-address", key: (i: number) => ({ localAddress: `127.77.9.${i + 1}` }) },
        // One room.
        { affinity: "query:room", key: () => ({ path: "/?room=hot" }) },
        // One browser's affinity cookie.
        {
            affinity: "cookie",
            key: () => ({ headers: { cookie: "wss_affinity=0123456789abcdef", origin: `https://localhost:${stack.edgeAddress.port}` } }),
        },
    ] as const;

    for (const mode of modes) {
        it(`${mode.affinity}: one hot key fills its backend, then the next of its hash order, then the last; past them all, 502; room on its backend brings it home`, async () => {
            await stack.reconfigure({ affinity: mode.affinity });
            const { opened, refused } = await openSameKey(backendCount * cap + 5, mode.key);
            try {
                const home = opened[0].hello.backend;
                assert.deepEqual(
                    new Set(opened.slice(0, cap).map((s) => s.hello.backend)),
                    new Set([home]),
                    "the first sockets all on the key's own backend",
                );
                assert.deepEqual(
                    Object.values(perBackend(opened)),
                    Array(backendCount).fill(cap),
                    `each backend holds exactly its cap: ${JSON.stringify(perBackend(opened))}`,
                );
                assert.equal(refused.length, 5);
                for (const message of refused) assert.match(message, /answered 502/);

                // Room on the key's own backend: the key's next socket goes home, not elsewhere, once
                // NGINX asks it again (it skips a backend for fail_timeout, 10 s, after three refusals).
                await close(opened[0].socket);
                await waitUntil(5000, async () => (await stack.metricsSnapshot()).backends[home] === cap - 1, `${home} saw a socket close`);
                let again: EdgeSession | undefined;
                await waitUntil(
                    30000,
                    async () => {
                        again = await connectToEdge(stack, mode.key(backendCount * cap + 5)).catch(() => undefined);
                        return again !== undefined;
                    },
                    "the key's next socket found room",
                );
                opened.push(again!);
                assert.equal(again!.hello.backend, home);
            } finally {
                await closeAll(opened);
            }
        });
    }

    it("after a reload (any new release), which starts NGINX's count from zero, the full backend's own 503 sends the key on to the next", async () => {
        await stack.reconfigure({ affinity: "query:room" });
        const { opened } = await openSameKey(cap, () => ({ path: "/?room=reloaded" }));
        try {
            const home = opened[0].hello.backend;
            assert.deepEqual(perBackend(opened), { [home]: cap });
            await stack.deploy();
            const more = await openSameKey(3, () => ({ path: "/?room=reloaded" }));
            opened.push(...more.opened);
            assert.deepEqual(more.refused, []);
            assert.ok(
                more.opened.every((s) => s.hello.backend !== home),
                `none past ${home}'s cap: ${more.opened.map((s) => s.hello.backend)}`,
            );
            assert.equal((await stack.metricsSnapshot()).backends[home], cap);
        } finally {
            await closeAll(opened);
        }
    });
});
