// Backpressure end to end, on a live local edge: a client that sends and never reads cannot make a
// backend hold its echoes without bound (the backend stops reading from it, and TCP pushes back
// through NGINX to the sender), the backend's other clients keep being served meanwhile, and a
// client held back too long is closed with 1008, which it sees once it reads again.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import type WebSocket from "ws";
import { waitUntil } from "../local/processes";
import { close, echo } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, sleep, startTestEdge } from "./support/localEdge";

/** idleTimeoutSeconds 34: a held-back client is closed after 17 s, past the 15 s flood below. */
const stuckSeconds = 17;
const mebibyte = 1024 * 1024;

const residentBytes = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) * 1024;

describe("a client that sends and never reads", async () => {
    const stack = await startTestEdge({ settings: { idleTimeoutSeconds: String(stuckSeconds * 2) } });
    const metric = async (backend: string, name: string) => {
        const url = stack.outputs.metrics.find((m) => m.name === backend)?.url ?? assert.fail(`no metrics for ${backend}`);
        const text = await (await fetch(url)).text();
        return Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? 0);
    };

    /** Two clients of different networks that land on the same backend. */
    async function neighbours(first: number): Promise<{ flooder: WebSocket; other: WebSocket; backend: string }> {
        const { socket: flooder, hello } = await connectToEdge(stack, { localAddress: clientNetworkAddress(first) });
        for (let n = first + 1; n < first + 40; n++) {
            const { socket, hello: next } = await connectToEdge(stack, { localAddress: clientNetworkAddress(n) });
            if (next.backend === hello.backend) return { flooder, other: socket, backend: String(hello.backend) };
            await close(socket);
        }
        throw new Error(`no second client network landed on ${hello.backend}`);
    }

    it("grows no backend by more than 64 MiB in 15 s of 1 MiB frames, and the backend's other clients keep being served", async (t) => {
        const { flooder, other, backend } = await neighbours(900);
        const pid = stack.outputs.backends.find((b) => b.name === backend)?.pid ?? assert.fail(backend);
        const before = residentBytes(pid);
        let peak = before;
        let slowestEcho = 0;
        const frame = Buffer.alloc(mebibyte, 0x61);
        flooder.pause(); // never reads
        const until = Date.now() + 15000;
        let offered = 0;
        for (let round = 0; round < 200 && Date.now() < until; round++) {
            flooder.send(frame);
            offered += frame.length;
            const started = Date.now();
            await echo(other, `still served ${round}`, 5000);
            slowestEcho = Math.max(slowestEcho, Date.now() - started);
            peak = Math.max(peak, residentBytes(pid));
            await sleep(100);
        }
        assert.ok(offered >= 64 * mebibyte, `the client offered ${offered / mebibyte} MiB, more than the bound`);
        const growth = peak - before;
        t.diagnostic(
            `offered ${offered / mebibyte} MiB; ${backend} grew by ${(growth / mebibyte).toFixed(1)} MiB; slowest echo of its other client ${slowestEcho} ms`,
        );
        assert.ok(growth <= 64 * mebibyte, `${backend} grew by ${(growth / mebibyte).toFixed(1)} MiB`);
        assert.ok((await metric(backend, "wss_backend_held_back_total")) >= 1, "the backend held the client back");
        assert.ok(slowestEcho < 2000, `its other client waited ${slowestEcho} ms for an echo`);
        flooder.terminate();
        await close(other);
    });

    it(`closes a client held back for ${stuckSeconds} s with 1008, which it reads once it reads again`, async () => {
        const { flooder, other, backend } = await neighbours(950);
        await close(other);
        flooder.pause();
        const frame = Buffer.alloc(mebibyte, 0x62);
        // Sends until the backend holds it back, then nothing more: the hold is its last.
        await waitUntil(
            20000,
            async () => {
                flooder.send(frame);
                await sleep(100);
                return (await metric(backend, "wss_backend_held_back_sockets")) >= 1;
            },
            "the backend never held the client back",
        );
        const closed = new Promise<number>((resolve) => flooder.once("close", (code) => resolve(code)));
        await sleep((stuckSeconds - 1) * 1000);
        assert.equal(await metric(backend, "wss_backend_held_back_sockets"), 1, "still held back, not yet closed");
        await sleep(2000);
        flooder.resume();
        const code = await Promise.race([closed, sleep(25000).then(() => -1)]);
        assert.equal(code, 1008, "closed as a policy violation, after what was queued before it");
    });
});
