/**
 * One load-generator process, driven by the bench over IPC. It holds its sockets, measures
 * from the client side, and reports its own CPU time so a saturated generator shows up as
 * such instead of being taken for the proxy's limit. Every command is bounded in count and time.
 */
import WebSocket from "ws";
import { dial, rawSession, type TlsTarget } from "./wsClient";

export type { TlsTarget } from "./wsClient";

export type Command =
    | {
          readonly cmd: "open";
          readonly target: TlsTarget;
          readonly count: number;
          readonly addresses: readonly string[];
          readonly concurrency: number;
          readonly deadlineMs: number;
      }
    | {
          readonly cmd: "sessions";
          readonly target: TlsTarget;
          readonly count: number;
          readonly addresses: readonly string[];
          readonly concurrency: number;
          readonly resume: boolean;
          readonly deadlineMs: number;
      }
    | { readonly cmd: "echo"; readonly sockets: number; readonly size: number; readonly durationMs: number }
    | {
          readonly cmd: "throughput";
          readonly sockets: number;
          readonly size: number;
          readonly inflight: number;
          readonly durationMs: number;
      }
    | { readonly cmd: "status" }
    | { readonly cmd: "reconnect"; readonly target: TlsTarget; readonly addresses: readonly string[]; readonly deadlineMs: number }
    /**
     * From now on, a held socket that closes without the bench asking reconnects by itself, as a
     * client library does: after the close's `retry-after-ms` hint when `honourHints` (else at
     * once), then every 20 ms, 5 s per attempt, for at most `deadlineMs` after its close.
     */
    | { readonly cmd: "follow"; readonly target: TlsTarget; readonly honourHints: boolean; readonly deadlineMs: number }
    /** Waits (at most `deadlineMs`) until every socket that closed since `follow` is served again or gave up, and reports each. */
    | { readonly cmd: "followed"; readonly deadlineMs: number }
    | { readonly cmd: "close" };

export interface Reply {
    readonly ok: boolean;
    readonly error?: string;
    /** Generator CPU time during the command, and its share of one core over the wall time. */
    readonly cpuMs: number;
    readonly wallMs: number;
    readonly [key: string]: unknown;
}

interface Held {
    /** Which of the target's URLs it dialled (a backend of its own when direct, a room of its own): every reconnect dials it again. */
    readonly urlIndex: number;
    socket: WebSocket;
    backend: string;
    address: string;
    closedUnexpectedly: boolean;
}

const held: Held[] = [];
let expectingClose = false;

/** One socket's way back after it closed under a `follow`: times are Date.now() of this machine. */
export interface Rejoin {
    /** Which held socket (its index in this generator). */
    readonly client: number;
    readonly closedAt: number;
    readonly code: number;
    servedAt?: number;
    attempts: number;
    readonly backendBefore: string;
    backendAfter?: string;
}
let following: { readonly target: TlsTarget; readonly honourHints: boolean; readonly deadlineMs: number } | undefined;
const rejoins: Rejoin[] = [];
const rejoining = new Set<Promise<void>>();

async function rejoin(entry: Held, code: number, reason: string): Promise<void> {
    if (!following) return;
    const { target, honourHints, deadlineMs } = following;
    const record: Rejoin = { client: held.indexOf(entry), closedAt: Date.now(), code, attempts: 0, backendBefore: entry.backend };
    rejoins.push(record);
    const hint = honourHints ? /retry-after-ms=(\d+)/.exec(reason) : null;
    if (hint) await new Promise((r) => setTimeout(r, Number(hint[1])));
    const deadline = record.closedAt + deadlineMs;
    while (Date.now() < deadline && following) {
        record.attempts++;
        try {
            const again = await dial(target, entry.urlIndex, entry.address, 5000);
            Object.assign(entry, { socket: again.socket, backend: again.backend, closedUnexpectedly: false });
            watch(entry);
            record.servedAt = Date.now();
            record.backendAfter = again.backend;
            return;
        } catch {
            await new Promise((r) => setTimeout(r, 20));
        }
    }
}

/** Runs `total` jobs with at most `concurrency` in flight, stopping new ones at the deadline. */
async function pool(total: number, concurrency: number, deadline: number, job: (i: number) => Promise<void>): Promise<void> {
    let next = 0;
    const lanes = Array.from({ length: Math.min(concurrency, total) }, async () => {
        while (next < total && Date.now() < deadline) await job(next++);
    });
    await Promise.all(lanes);
}

/**
 * Feeds a socket's messages to `onMessage` until it calls `finish` or the socket closes, and then
 * removes its listeners: the same sockets serve one command after another.
 */
function converse(socket: WebSocket, begin: () => void, onMessage: (finish: () => void) => void): Promise<void> {
    return new Promise((resolve) => {
        const finish = () => {
            socket.off("message", handle);
            socket.off("close", finish);
            resolve();
        };
        const handle = () => onMessage(finish);
        socket.on("message", handle);
        socket.once("close", finish);
        begin();
    });
}

/** Marks the entry when its socket closes without the bench asking. */
function watch(entry: Held): void {
    entry.socket.once("close", (code, reason) => {
        if (expectingClose) return;
        entry.closedUnexpectedly = true;
        if (!following) return;
        const done = rejoin(entry, code, reason.toString());
        rejoining.add(done);
        done.finally(() => rejoining.delete(done));
    });
}

function track(entry: Held): void {
    watch(entry);
    held.push(entry);
}

const errorsSeen = (errors: Map<string, number>) => Object.fromEntries([...errors].slice(0, 5));
const note = (errors: Map<string, number>, e: unknown) => {
    const key = (e as Error).message.slice(0, 60);
    errors.set(key, (errors.get(key) ?? 0) + 1);
};

function percentile(sorted: Float64Array, p: number): number {
    if (sorted.length === 0) return NaN;
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function handle(command: Command): Promise<Record<string, unknown>> {
    switch (command.cmd) {
        case "open": {
            const errors = new Map<string, number>();
            let opened = 0;
            const base = held.length;
            await pool(command.count, command.concurrency, Date.now() + command.deadlineMs, async (i) => {
                const address = command.addresses[(base + i) % command.addresses.length];
                try {
                    const { socket, backend } = await dial(command.target, base + i, address);
                    track({ urlIndex: base + i, socket, backend, address, closedUnexpectedly: false });
                    opened++;
                } catch (e) {
                    note(errors, e);
                }
            });
            return { opened, failed: command.count - opened, errors: errorsSeen(errors) };
        }
        case "sessions": {
            // New sessions one after another: handshake, upgrade, hello, close; with resumption,
            // each offers the last session the server issued.
            const errors = new Map<string, number>();
            let done = 0;
            let session: Buffer | undefined;
            const started = Date.now();
            await pool(command.count, command.concurrency, started + command.deadlineMs, async (i) => {
                try {
                    const { session: issued } = await rawSession(
                        command.target,
                        i,
                        command.addresses[i % command.addresses.length],
                        command.resume ? session : undefined,
                    );
                    if (command.resume) session = issued;
                    done++;
                } catch (e) {
                    note(errors, e);
                }
            });
            return { sessions: done, failed: command.count - done, seconds: (Date.now() - started) / 1000, errors: errorsSeen(errors) };
        }
        case "echo": {
            const sockets = held.slice(0, command.sockets).filter((h) => h.socket.readyState === WebSocket.OPEN);
            const payload = Buffer.alloc(command.size, 7);
            const samples: number[] = [];
            const deadline = Date.now() + command.durationMs;
            await Promise.all(
                sockets.map((h) => {
                    let sentAt = 0n;
                    const send = () => {
                        sentAt = process.hrtime.bigint();
                        h.socket.send(payload, { binary: true });
                    };
                    return converse(h.socket, send, (finish) => {
                        samples.push(Number(process.hrtime.bigint() - sentAt) / 1000);
                        if (Date.now() >= deadline) finish();
                        else send();
                    });
                }),
            );
            const sorted = Float64Array.from(samples).sort();
            return {
                sockets: sockets.length,
                messages: samples.length,
                p50us: percentile(sorted, 0.5),
                p99us: percentile(sorted, 0.99),
                p999us: percentile(sorted, 0.999),
            };
        }
        case "throughput": {
            const sockets = held.slice(0, command.sockets).filter((h) => h.socket.readyState === WebSocket.OPEN);
            const payload = Buffer.alloc(command.size, 9);
            let messages = 0;
            const deadline = Date.now() + command.durationMs;
            await Promise.all(
                sockets.map((h) => {
                    let outstanding = 0;
                    const send = () => {
                        outstanding++;
                        h.socket.send(payload, { binary: true });
                    };
                    return converse(
                        h.socket,
                        () => {
                            for (let k = 0; k < command.inflight; k++) send();
                        },
                        (finish) => {
                            messages++;
                            outstanding--;
                            if (Date.now() < deadline) send();
                            else if (outstanding === 0) finish();
                        },
                    );
                }),
            );
            return { sockets: sockets.length, messages };
        }
        case "status": {
            const open = held.filter((h) => h.socket.readyState === WebSocket.OPEN).length;
            const perBackend: Record<string, number> = {};
            for (const h of held) if (h.socket.readyState === WebSocket.OPEN) perBackend[h.backend] = (perBackend[h.backend] ?? 0) + 1;
            return { held: held.length, open, drops: held.filter((h) => h.closedUnexpectedly).length, perBackend };
        }
        case "reconnect": {
            // Every socket that dropped reconnects at once; report when the last is served again.
            const dropped = held.filter((h) => h.closedUnexpectedly && h.socket.readyState !== WebSocket.OPEN);
            const started = Date.now();
            const deadline = started + command.deadlineMs;
            let lastServedMs = 0;
            let served = 0;
            let attempts = 0;
            const servedMs: number[] = [];
            const sameBackend = { same: 0, moved: 0 };
            const errors = new Map<string, number>();
            await Promise.all(
                dropped.map(async (h) => {
                    while (Date.now() < deadline) {
                        attempts++;
                        try {
                            const before = h.backend;
                            const again = await dial(command.target, h.urlIndex, h.address, 5000);
                            Object.assign(h, { socket: again.socket, backend: again.backend, closedUnexpectedly: false });
                            watch(h);
                            served++;
                            if (again.backend === before) sameBackend.same++;
                            else sameBackend.moved++;
                            lastServedMs = Date.now() - started;
                            servedMs.push(lastServedMs);
                            return;
                        } catch (error) {
                            note(errors, error);
                            await new Promise((r) => setTimeout(r, 20));
                        }
                    }
                }),
            );
            return { dropped: dropped.length, served, lastServedMs, servedMs, attempts, sameBackend, errors: errorsSeen(errors) };
        }
        case "follow": {
            following = { target: command.target, honourHints: command.honourHints, deadlineMs: command.deadlineMs };
            rejoins.length = 0;
            return {};
        }
        case "followed": {
            const deadline = Date.now() + command.deadlineMs;
            // Settled: nothing rejoining, and no new close for 500 ms.
            let quietSince = Date.now();
            let seen = rejoins.length;
            while (Date.now() < deadline) {
                if (rejoins.length !== seen || rejoining.size > 0) {
                    seen = rejoins.length;
                    quietSince = Date.now();
                } else if (Date.now() - quietSince >= 500) break;
                await new Promise((r) => setTimeout(r, 50));
            }
            following = undefined;
            return { rejoins: rejoins.splice(0) };
        }
        case "close": {
            following = undefined;
            expectingClose = true;
            for (const h of held.splice(0)) h.socket.terminate();
            expectingClose = false;
            return {};
        }
    }
}

process.on("message", async (command: Command) => {
    const cpu = process.cpuUsage();
    const started = Date.now();
    let reply: Reply;
    try {
        const result = await handle(command);
        const used = process.cpuUsage(cpu);
        reply = { ok: true, ...result, cpuMs: (used.user + used.system) / 1000, wallMs: Date.now() - started };
    } catch (error) {
        const used = process.cpuUsage(cpu);
        reply = { ok: false, error: (error as Error).message, cpuMs: (used.user + used.system) / 1000, wallMs: Date.now() - started };
    }
    process.send!(reply);
});
process.on("disconnect", () => process.exit(0));
