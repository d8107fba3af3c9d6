// Rebalancing after scale-out, through the local stack's real NGINX and backends: 3 → 4 backends
// under open sockets. Once every proxy routes by the new fleet, each backend closes the sockets
// whose key now hashes to another backend (1012, spread over rebalanceSeconds); a client that
// reconnects at once lands on its key's new backend and stays there.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sleep, waitUntil } from "../local/processes";
import { close, type EdgeSession } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, startTestEdge } from "./support/localEdge";

const rebalanceSeconds = 4;

interface Client {
    readonly address: string;
    readonly path: string;
    session: EdgeSession;
    /** Every backend it was served by, in order. */
    readonly backends: string[];
    /** Close codes it saw (it reconnects after each). */
    readonly closes: number[];
    reconnecting: boolean;
}

/** Opens one socket per client, `concurrency` at a time; each reconnects at once whenever its socket closes. */
async function openClients(stack: Parameters<typeof connectToEdge>[0], keys: { address: string; path: string }[], concurrency = 100) {
    const clients: Client[] = [];
    let following = true;
    const follow = (client: Client) =>
        client.session.socket.once("close", async (code) => {
            if (!following) return;
            client.closes.push(code);
            client.reconnecting = true;
            for (let attempt = 0; attempt < 50; attempt++) {
                try {
                    client.session = await connectToEdge(stack, { localAddress: client.address, path: client.path });
                    client.backends.push(client.session.hello.backend);
                    client.reconnecting = false;
                    follow(client);
                    return;
                } catch {
                    await sleep(100);
                }
            }
        });
    for (let start = 0; start < keys.length; start += concurrency) {
        const batch = await Promise.all(
            keys.slice(start, start + concurrency).map(async ({ address, path }) => {
                const session = await connectToEdge(stack, { localAddress: address, path });
                return { address, path, session, backends: [session.hello.backend], closes: [], reconnecting: false } as Client;
            }),
        );
        for (const client of batch) follow(client);
        clients.push(...batch);
    }
    /** Stops reconnecting, then closes every socket. */
    const closeAll = async () => {
        following = false;
        await Promise.all(clients.map((c) => close(c.session.socket)));
    };
    return { clients, closeAll };
}

function counts(clients: readonly Client[]): Record<string, number> {
    const result: Record<string, number> = {};
    for (const c of clients) result[c.backends.at(-1)!] = (result[c.backends.at(-1)!] ?? 0) + 1;
    return result;
}

for (const scenario of [
    { affinity: "client-address", sockets: 1500, key: (n: number) => ({ address: clientNetworkAddress(n), path: "/" }) },
    { affinity: "query:room", sockets: 1000, key: (n: number) => ({ address: clientNetworkAddress(n), path: `/?room=room-${n}` }) },
]) {
    describe(`rebalancing after scale-out, ${scenario.affinity}: 3 → 4 backends under ${scenario.sockets} sockets`, async () => {
        const stack = await startTestEdge({
            settings: { affinity: scenario.affinity, rebalanceSeconds: String(rebalanceSeconds), backendCount: "3" },
        });

        it("moves each socket whose key hashes to another backend once, over the window, to that backend; no other socket closes", async (t) => {
            const { clients, closeAll } = await openClients(
                stack,
                Array.from({ length: scenario.sockets }, (_, n) => scenario.key(n)),
            );
            try {
                assert.equal(Object.keys(counts(clients)).length, 3);
                const started = Date.now();
                await stack.reconfigure({ backendCount: "4" });
                t.diagnostic(`the fourth backend serving, the proxies reloaded and the backends told after ${Date.now() - started} ms`);
                await sleep(rebalanceSeconds * 1000);
                await waitUntil(60000, () => clients.every((c) => !c.reconnecting), "every moved client reconnected");
                const tookMs = Date.now() - started;

                const moved = clients.filter((c) => c.backends.length > 1);
                const final = counts(clients);
                const sizes = Object.values(final);
                t.diagnostic(
                    `${moved.length} of ${clients.length} moved within ${tookMs} ms; per backend ${JSON.stringify(final)}; largest/smallest ${(Math.max(...sizes) / Math.min(...sizes)).toFixed(2)}`,
                );
                assert.equal(Object.keys(final).length, 4, "the new backend holds sockets");
                for (const c of clients) {
                    assert.ok(
                        c.closes.every((code) => code === 1012),
                        `${c.address}: only 1012 closes, got ${c.closes}`,
                    );
                    assert.ok(c.closes.length <= 1, `${c.address} moved ${c.closes.length} times: ${c.backends}`);
                }
                assert.ok(
                    moved.every((c) => c.backends[0] !== c.backends[1]),
                    "a moved socket lands on another backend",
                );
                // Where a fresh socket of the key lands: the moved ones are there, and so is everyone else.
                const sample = clients.filter((_, i) => i % 10 === 0);
                for (const c of sample) {
                    const fresh = await connectToEdge(stack, { localAddress: c.address, path: c.path });
                    await close(fresh.socket);
                    assert.equal(c.backends.at(-1), fresh.hello.backend, `${c.address}${c.path}: on its key's backend`);
                }
                // Consistent hashing moves about the new backend's share; ip_hash (hash modulo the count) about three quarters.
                const share = moved.length / clients.length;
                if (scenario.affinity === "client-address") {
                    assert.ok(share > 0.6 && share < 0.9, `moved ${share}`);
                    assert.ok(Math.max(...sizes) <= 1.2 * Math.min(...sizes), `largest/smallest ≤ 1.2: ${JSON.stringify(final)}`);
                } else assert.ok(share > 0.1 && share < 0.4, `moved ${share}`);
            } finally {
                await closeAll();
            }
        });
    });
}
