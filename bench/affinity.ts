/**
 * The affinity modes side by side, through real NGINX in one run (npm run bench:affinity):
 *
 * - re-mapping: the backend of each of 10,000 keys with 3 backends, then 4, then 3 again; the
 *   fraction that moved each time (consistent hashing should stay near 1/4);
 * - spread: 1,000 clients behind one /24, and the largest share any backend gets;
 * - cost: proxy CPU per new session and proxy memory per held socket, for each mode;
 * - a hot key past a backend's cap: 1,000 sockets of one key held open with backendMaxSockets 400,
 *   and where they land (its own backend, the next of its hash order, the last, refused).
 *
 * Keys: client-address, a client network each (127.x.y.1); cookie, an issued-looking cookie
 * sent with a browser's Origin; query:room, a room each. Results: bench/results/affinity.{md,json}.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LocalStack } from "../local/localStack";
import type { UpstreamServer } from "../nginx/edgeConfigSpec";
import { connect } from "../smoke/edgeClient";
import { benchMain } from "./benchMain";
import { LoadFleet } from "./loadFleet";
import { cpuTimeMs, pidsUnder, proportionalSetKiB } from "./proxies";
import { benchLogger } from "./stats";

type Mode = "client-address" | "cookie" | "query:room";
const modes: Mode[] = ["client-address", "cookie", "query:room"];

interface ModeResult {
    readonly mode: Mode;
    readonly keys: number;
    readonly moved3to4: number;
    readonly moved4to3: number;
    /** Keys back on the backend they had before the fourth came (should be all). */
    readonly returned: number;
    readonly spreadLargestShare: number;
    readonly spread: Record<string, number>;
    readonly proxyCpuUsPerSession: number;
    readonly proxyKiBPerSocket: number;
    /** 1,000 sockets of one key with a cap of 400 per backend: how many landed on each backend, in the order they filled, and refused. */
    readonly hotKey: { readonly landed: number[]; readonly refused: number };
}

const hotKeySockets = 1000;
const hotKeyCap = 400;

const log = benchLogger("bench:affinity");
const address = (n: number) => `127.${40 + Math.floor(n / 250)}.${(n % 250) + 1}.1`;

async function main(dir: string): Promise<void> {
    const { values } = parseArgs({ options: { keys: { type: "string", default: "10000" }, quick: { type: "boolean" } } });
    const keyCount = values.quick ? 300 : Number(values.keys);
    const stack = await LocalStack.start({ stateDir: join(dir, "stack"), edgePort: 0, settings: { backendCount: "4" } });
    const fleet = await LoadFleet.start(2);
    const results: ModeResult[] = [];
    try {
        const fourBackends = stack.backendNames().map((name) => ({ address: "127.0.0.1", port: stack.backendAddress(name).port }));
        const threeBackends = fourBackends.slice(0, 3);
        for (const mode of modes) {
            await stack.reconfigure({ backendCount: "4", affinity: mode });
            const origin = `https://localhost:${stack.edgeAddress.port}`;
            const keyed = (n: number): Keyed =>
                mode === "client-address"
                    ? { localAddress: address(n), path: "/", headers: {} }
                    : mode === "cookie"
                      ? {
                            localAddress: "127.0.0.1",
                            path: "/",
                            headers: {
                                Origin: origin,
                                Cookie: `wss_affinity=${(BigInt(n) * 0x9e3779b97f4a7c15n).toString(16).padStart(32, "0").slice(-32)}`,
                            },
                        }
                      : { localAddress: "127.0.0.1", path: `/?room=r${n}`, headers: {} };
            const landing = async (backends: typeof fourBackends) => {
                await stack.deployConfig(stack.renderConfig(backends));
                return backendsOf(stack, keyCount, keyed);
            };
            log(`${mode}: ${keyCount} keys with 3 backends, then 4, then 3`);
            const before = await landing(threeBackends);
            const withFour = await landing(fourBackends);
            const after = await landing(threeBackends);
            const moved = (a: string[], b: string[]) => a.filter((backend, i) => backend !== b[i]).length / a.length;

            // 1,000 clients behind one /24: browsers that load a page first (cookie), a room each (query).
            const spread: Record<string, number> = {};
            const nat = (n: number) => `127.39.0.${(n % 250) + 1}`;
            const spreadLanding = await backendsOf(
                stack,
                1000,
                (n): Keyed =>
                    mode === "client-address"
                        ? { localAddress: nat(n), path: "/", headers: {} }
                        : mode === "cookie"
                          ? { localAddress: nat(n), path: "/", headers: { Origin: origin } }
                          : { localAddress: nat(n), path: `/?room=nat${n}`, headers: {} },
            );
            for (const backend of spreadLanding) spread[backend] = (spread[backend] ?? 0) + 1;

            const cost = await costPerSession(stack, fleet, mode, origin);
            const hotKey = await pastTheCap(stack, threeBackends, keyed(0));
            results.push({
                mode,
                keys: keyCount,
                moved3to4: moved(before, withFour),
                moved4to3: moved(withFour, after),
                returned: before.filter((backend, i) => backend === after[i]).length / keyCount,
                spreadLargestShare: Math.max(...Object.values(spread)) / 1000,
                spread,
                ...cost,
                hotKey,
            });
            log(
                `${mode}: moved ${(results.at(-1)!.moved3to4 * 100).toFixed(1)}% (3→4), ${(results.at(-1)!.moved4to3 * 100).toFixed(1)}% (4→3); largest share behind one /24 ${(results.at(-1)!.spreadLargestShare * 100).toFixed(1)}%; ${cost.proxyCpuUsPerSession.toFixed(0)} µs proxy CPU per session, ${cost.proxyKiBPerSocket.toFixed(1)} KiB per socket`,
            );
        }
    } finally {
        await fleet.all(() => ({ cmd: "close" })).catch(() => undefined);
        await fleet.stop();
        await stack.stop();
    }
    const name = values.quick ? "affinity-quick" : "affinity";
    writeFileSync(join(__dirname, "results", `${name}.json`), `${JSON.stringify({ date: new Date().toISOString(), results }, null, 2)}\n`);
    writeFileSync(join(__dirname, "results", `${name}.md`), report(results));
    log(`results: bench/results/${name}.{md,json}`);
}

/**
 * One key's sockets held open past a backend's cap (`backendMaxSockets` 400 for this step, each
 * backend restarted to take it) through NGINX in front of `backends`: how many each backend took,
 * in the order they filled, and how many were refused.
 */
async function pastTheCap(
    stack: LocalStack,
    backends: readonly UpstreamServer[],
    key: Keyed,
): Promise<{ landed: number[]; refused: number }> {
    const restartBackends = async () => {
        for (const name of stack.backendNames()) {
            await stack.stopBackend(name, "SIGINT");
            await stack.restartBackend(name);
        }
    };
    await stack.reconfigure({ backendMaxSockets: String(hotKeyCap) });
    await restartBackends();
    await stack.deployConfig(stack.renderConfig(backends));
    const held: { socket: { terminate(): void }; backend: string }[] = [];
    let refused = 0;
    try {
        for (let start = 0; start < hotKeySockets; start += 50) {
            const batch = await Promise.allSettled(
                Array.from({ length: Math.min(50, hotKeySockets - start) }, () =>
                    connect(new URL(key.path, stack.outputs.endpoint).toString(), {
                        ca: stack.certificates.caCertificatePem,
                        localAddress: key.localAddress,
                        headers: key.headers,
                    }),
                ),
            );
            for (const result of batch) {
                if (result.status === "fulfilled") held.push({ socket: result.value.socket, backend: result.value.hello.backend });
                else refused++;
            }
        }
    } finally {
        for (const { socket } of held) socket.terminate();
        await stack.reconfigure({ backendMaxSockets: "0" });
        await restartBackends();
    }
    const order: string[] = [];
    for (const { backend } of held) if (!order.includes(backend)) order.push(backend);
    return { landed: order.map((name) => held.filter((h) => h.backend === name).length), refused };
}

/** How one client comes: from where, to which path, with which headers. */
interface Keyed {
    readonly localAddress: string;
    readonly path: string;
    readonly headers: Record<string, string>;
}

/** The backend each of `count` keyed clients lands on, 100 at a time. */
async function backendsOf(stack: LocalStack, count: number, keyed: (n: number) => Keyed): Promise<string[]> {
    const landed: string[] = new Array(count);
    for (let start = 0; start < count; start += 100) {
        await Promise.all(
            Array.from({ length: Math.min(100, count - start) }, async (_, i) => {
                const n = start + i;
                const { localAddress, path, headers } = keyed(n);
                const { socket, hello } = await connect(new URL(path, stack.outputs.endpoint).toString(), {
                    ca: stack.certificates.caCertificatePem,
                    localAddress,
                    headers,
                });
                landed[n] = hello.backend;
                socket.terminate();
            }),
        );
    }
    return landed;
}

/** Proxy CPU per new session (2,000 sessions) and proxy memory per held socket (2,000 sockets), as a browser would come in this mode. */
async function costPerSession(
    stack: LocalStack,
    fleet: LoadFleet,
    mode: Mode,
    origin: string,
): Promise<{ proxyCpuUsPerSession: number; proxyKiBPerSocket: number }> {
    const target = {
        urls: [`wss://127.0.0.1:${stack.edgeAddress.port}/${mode.startsWith("query") ? "?room=lobby" : ""}`],
        ca: stack.certificates.caCertificatePem,
        servername: "localhost",
        // A browser's first socket: Origin, no cookie yet (the edge issues one on every 101).
        headers: (mode === "cookie" ? { Origin: origin } : {}) as Record<string, string>,
    };
    const addresses = Array.from({ length: 200 }, (_, n) => address(5000 + n));
    const nginx = () => pidsUnder(stack.nginxMasterPid() ?? 0);
    const cpuBefore = cpuTimeMs(nginx());
    const sessions = await fleet.all((n) => ({
        cmd: "sessions",
        target,
        count: 1000,
        addresses: addresses.filter((_, i) => i % 2 === n),
        concurrency: 20,
        resume: true,
        deadlineMs: 120000,
    }));
    const done = sessions.reduce((sum, reply) => sum + Number(reply.sessions ?? 0), 0);
    const proxyCpuUsPerSession = ((cpuTimeMs(nginx()) - cpuBefore) * 1000) / done;
    const idle = proportionalSetKiB(nginx());
    const opened = await fleet.all((n) => ({
        cmd: "open",
        target,
        count: 1000,
        addresses: addresses.filter((_, i) => i % 2 === n),
        concurrency: 50,
        deadlineMs: 120000,
    }));
    const held = opened.reduce((sum, reply) => sum + Number(reply.opened ?? 0), 0);
    const proxyKiBPerSocket = (proportionalSetKiB(nginx()) - idle) / held;
    await fleet.all(() => ({ cmd: "close" }));
    return { proxyCpuUsPerSession, proxyKiBPerSocket };
}

function report(results: readonly ModeResult[]): string {
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    return [
        "# Affinity modes through real NGINX (npm run bench:affinity)",
        "",
        `One run, ${new Date().toISOString().slice(0, 10)}: the local stack (Debian's NGINX 1.22, two workers), ${results[0]?.keys ?? 0} keys per mode.`,
        "Moved: the share of keys whose backend changed when a fourth backend joined, and when it left again",
        "(back to 3: returned is the share back where it was). Spread: 1,000 clients behind one /24 (browsers",
        "that load a page first; a room each), and the largest share one of the 3 backends got. Cost: proxy CPU",
        "per new session (TLS, upgrade, hello; resumed TLS) and proxy memory (PSS) per held socket, as a",
        "browser's first socket comes in that mode (cookie: with Origin, so each 101 issues a cookie).",
        `Past the cap: ${hotKeySockets} sockets of one key held open with backendMaxSockets ${hotKeyCap}: how many each backend took,`,
        "in the order they filled (the key's own backend first), and how many were refused.",
        "",
        "| Mode | Moved 3→4 | Moved 4→3 | Returned | Largest share behind one /24 | Proxy CPU per session | Proxy memory per socket | Past the cap: landed (refused) |",
        "|---|---|---|---|---|---|---|---|",
        ...results.map(
            (r) =>
                `| ${r.mode} | ${pct(r.moved3to4)} | ${pct(r.moved4to3)} | ${pct(r.returned)} | ${pct(r.spreadLargestShare)} | ${r.proxyCpuUsPerSession.toFixed(0)} µs | ${r.proxyKiBPerSocket.toFixed(1)} KiB | ${r.hotKey.landed.join(" / ")} (${r.hotKey.refused}) |`,
        ),
        "",
    ].join("\n");
}

benchMain("bench-affinity", main);
