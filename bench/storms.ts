/**
 * Reconnect storms: what clients see when something behind the endpoint dies, and how long until
 * every one of them is served again, as a distribution (p50, p99, max from the moment the cause
 * is done), with how many attempts it took and whether each client came back to its backend.
 *
 *   npm run bench:storms [-- --quick]
 *
 * - backend restarts: one of three backends is stopped and started again (SIGTERM, its clients
 *   get 1001), this project's edge next to HAProxy, and next to the same clients dialling the
 *   backends directly (the floor this machine's generator and backends set);
 * - backend dies: one is killed (SIGKILL) and stays dead, with active health checks on both
 *   (this project's agent; HAProxy's `check`);
 * - proxy dies: the load-balanced twin (HAProxy front, two NGINX proxies), one proxy's NGINX
 *   killed outright.
 *
 * Clients come from many /24s (several generator processes), and reconnect at once with 20 ms
 * between attempts and a 5 s limit per attempt, as a client library's reconnect loop might.
 *
 * Spread closes (a backend stopping for a deploy): each client reconnects the moment its socket
 * closes (after the close's retry-after-ms hint, when there is one), and the table gives each
 * one's time from its close to its next hello, and the most new sessions the surviving backends
 * took in any one second: this project's backend stopping with closeSpreadSeconds 0 (all at once,
 * as before) and with the window, next to HAProxy reloading with the same close-spread-time (its
 * soft stop spreads the closing of its own connections; it has nothing that spreads a backend's).
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { LocalStack } from "../local/localStack";
import { childPids, sleep } from "../local/processes";
import type { Rejoin, TlsTarget } from "./loadClient";
import { LoadFleet } from "./loadFleet";
import { type BenchContext, direct, haproxy, wssEdge } from "./proxies";
import { runSectionAlone } from "./sectionAlone";
import { benchLogger, percentile, sum } from "./stats";

export interface StormPlan {
    /** Sockets held before the cause; those on the victim reconnect. */
    readonly sockets: number;
    readonly loadProcesses: number;
    /** The close window of the spread-close rows (the setting's default in the full run). */
    readonly closeSpreadSeconds: number;
    /** The rebalance rows' window. */
    readonly rebalanceSeconds: number;
}

/** A stop whose closes may be spread, and how its clients came back (each reconnecting as its socket closed). */
export interface SpreadResult {
    readonly scenario: string;
    readonly proxy: string;
    readonly sockets: number;
    readonly reconnecting: number;
    readonly served: number;
    /** From the first close its clients saw to the last. */
    readonly closeSpanMs: number;
    /** Each client's time from its close to its next hello. */
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
    /** The most of them served again within any one second. */
    readonly peakSessionsPerSecond: number;
    readonly sameBackend: number;
}

/** Backends added under open sockets, and how the sockets whose key moved got there. */
export interface RebalanceResult {
    readonly scenario: string;
    readonly affinity: string;
    readonly sockets: number;
    readonly rebalanceSeconds: number;
    /** Sockets closed with 1012 and served again on another backend. */
    readonly moved: number;
    readonly served: number;
    /** Clients closed more than once. */
    readonly movedTwice: number;
    /** From the change (the reconfigure starting) to the last moved socket served again. */
    readonly lastServedMs: number;
    readonly peakSessionsPerSecond: number;
    /** Largest over smallest backend by open sockets, before the change (3 backends) and after (4). */
    readonly ratioBefore: number;
    readonly ratioAfter: number;
    readonly perBackendAfter: Record<string, number>;
}

/** What one run of the storms measured. */
export interface StormRun {
    readonly storms: StormResult[];
    readonly spread: SpreadResult[];
    readonly rebalance: RebalanceResult[];
}

export const fullStormPlan: StormPlan = { sockets: 3000, loadProcesses: 5, closeSpreadSeconds: 10, rebalanceSeconds: 20 };
export const quickStormPlan: StormPlan = { sockets: 90, loadProcesses: 2, closeSpreadSeconds: 2, rebalanceSeconds: 2 };

export interface StormResult {
    readonly scenario: string;
    readonly proxy: string;
    readonly sockets: number;
    /** Sockets that dropped and reconnected. */
    readonly reconnecting: number;
    readonly served: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
    /** Dial attempts per reconnecting client, on average. */
    readonly attemptsPerClient: number;
    /** Clients served again by the backend they had before. */
    readonly sameBackend: number;
    /** The most frequent reasons an attempt failed. */
    readonly errors: Record<string, number>;
}

const log = benchLogger("storms");

/** Until every dropped socket has seen its close: the generators' count of drops holds still for 300 ms (at most 10 s). */
async function dropsSettled(fleet: LoadFleet): Promise<void> {
    let last = -1;
    let still = 0;
    for (let i = 0; i < 100 && still < 3; i++) {
        await sleep(100);
        const drops = sum((await fleet.all(() => ({ cmd: "status" }))).map((s) => s.drops as number));
        still = drops > 0 && drops === last ? still + 1 : 0;
        last = drops;
    }
}

/** Opens `plan.sockets` through `target`, spread over the generators (each from its own /24s); resolves with how many each holds. */
async function holdSockets(fleet: LoadFleet, target: TlsTarget, plan: StormPlan): Promise<number> {
    const per = Math.ceil(plan.sockets / fleet.size);
    await fleet.all((n) => ({ cmd: "open", target, count: per, addresses: LoadFleet.addresses(n), concurrency: 64, deadlineMs: 120000 }));
    return per;
}

/** Holds `plan.sockets` through `target`, runs `cause`, then every dropped client reconnects at once. */
async function storm(
    fleet: LoadFleet,
    scenario: string,
    proxy: string,
    target: TlsTarget,
    plan: StormPlan,
    cause: () => Promise<void>,
): Promise<StormResult> {
    try {
        const per = await holdSockets(fleet, target, plan);
        await cause();
        await dropsSettled(fleet);
        const replies = await fleet.all((n) => ({ cmd: "reconnect", target, addresses: LoadFleet.addresses(n), deadlineMs: 60000 }));
        const servedMs = replies.flatMap((r) => r.servedMs as number[]).sort((a, b) => a - b);
        const reconnecting = sum(replies.map((r) => r.dropped as number));
        const errors: Record<string, number> = {};
        for (const reply of replies)
            for (const [reason, count] of Object.entries(reply.errors as Record<string, number>))
                errors[reason] = (errors[reason] ?? 0) + count;
        const result: StormResult = {
            scenario,
            proxy,
            sockets: per * fleet.size,
            reconnecting,
            served: sum(replies.map((r) => r.served as number)),
            p50Ms: percentile(servedMs, 0.5),
            p99Ms: percentile(servedMs, 0.99),
            maxMs: servedMs.at(-1) ?? Number.NaN,
            attemptsPerClient: sum(replies.map((r) => r.attempts as number)) / Math.max(1, reconnecting),
            sameBackend: sum(replies.map((r) => (r.sameBackend as { same: number }).same)),
            errors,
        };
        log(
            `${proxy}, ${scenario}: ${result.served}/${reconnecting} served again; p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms; ${result.attemptsPerClient.toFixed(1)} attempts each; ${result.sameBackend} on their old backend; ${JSON.stringify(errors)}`,
        );
        return result;
    } finally {
        await fleet.all(() => ({ cmd: "close" })).catch(() => undefined);
    }
}

/** The most of `times` (ms) within any one second. */
export function peakPerSecond(times: readonly number[]): number {
    const sorted = [...times].sort((a, b) => a - b);
    let peak = 0;
    for (let first = 0, last = 0; last < sorted.length; last++) {
        while (sorted[last] - sorted[first] >= 1000) first++;
        peak = Math.max(peak, last - first + 1);
    }
    return peak;
}

/** Holds `plan.sockets` through `target`; every client follows its socket's close by reconnecting; runs `cause`. */
async function spreadStorm(
    fleet: LoadFleet,
    scenario: string,
    proxy: string,
    target: TlsTarget,
    plan: StormPlan,
    honourHints: boolean,
    cause: () => Promise<void>,
): Promise<SpreadResult> {
    try {
        const per = await holdSockets(fleet, target, plan);
        await fleet.all(() => ({ cmd: "follow", target, honourHints, deadlineMs: 60000 }));
        await cause();
        const rejoins = (await fleet.all(() => ({ cmd: "followed", deadlineMs: 90000 }))).flatMap((r) => r.rejoins as Rejoin[]);
        const served = rejoins.filter((r) => r.servedAt !== undefined);
        const waits = served.map((r) => (r.servedAt as number) - r.closedAt).sort((a, b) => a - b);
        const closes = rejoins.map((r) => r.closedAt);
        const result: SpreadResult = {
            scenario,
            proxy,
            sockets: per * fleet.size,
            reconnecting: rejoins.length,
            served: served.length,
            closeSpanMs: closes.length === 0 ? 0 : Math.max(...closes) - Math.min(...closes),
            p50Ms: percentile(waits, 0.5),
            p99Ms: percentile(waits, 0.99),
            maxMs: waits.at(-1) ?? Number.NaN,
            peakSessionsPerSecond: peakPerSecond(served.map((r) => r.servedAt as number)),
            sameBackend: served.filter((r) => r.backendAfter === r.backendBefore).length,
        };
        log(
            `${proxy}, ${scenario}: ${result.served}/${result.reconnecting} served again; closes over ${result.closeSpanMs} ms; p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms from each close; peak ${result.peakSessionsPerSecond} new sessions/s`,
        );
        return result;
    } finally {
        await fleet.all(() => ({ cmd: "close" })).catch(() => undefined);
    }
}

/** Every storm, in one run. */
export async function runStorms(plan: StormPlan, dir: string): Promise<StormRun> {
    const fileLimit = Number(execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim());
    const run: StormRun = { storms: [], spread: [], rebalance: [] };
    const fleet = await LoadFleet.start(plan.loadProcesses);
    try {
        await stormsOnOneProxy(plan, dir, fileLimit, fleet, run);
        await stormOnTheTier(plan, dir, fileLimit, fleet, run.storms);
        for (const affinity of ["client-address", "query:room"]) run.rebalance.push(await scaleOut(plan, dir, fileLimit, fleet, affinity));
    } finally {
        await fleet.stop();
    }
    return run;
}

/** A backend restarts, then dies, behind each proxy under test, and with no proxy at all; then the spread closes. */
async function stormsOnOneProxy(plan: StormPlan, dir: string, fileLimit: number, fleet: LoadFleet, run: StormRun): Promise<void> {
    const results = run.storms;
    const stack = await LocalStack.start({ stateDir: join(dir, "storm-stack"), edgePort: 0, workerProcesses: 2 });
    try {
        const context = { stack, dir, fileLimit };
        const victim = stack.backendNames()[0];
        const restart = async () => {
            await stack.stopBackend(victim, "SIGTERM");
            await stack.restartBackend(victim);
        };
        const kill = async () => {
            await stack.stopBackend(victim, "SIGKILL");
        };
        // The next proxy under test starts with every backend up (HAProxy's checks start from "up").
        const revive = () => stack.restartBackend(victim);
        // The floor: the same clients dialling the backends themselves, no proxy in the way. What
        // a storm through a proxy takes beyond this is the proxy's doing.
        const floor = direct(context);
        results.push(await storm(fleet, "backend restarts", "direct (no proxy)", floor.target, plan, restart));
        for (const make of [() => wssEdge(context), () => haproxy(context, 1)]) {
            const proxy = await make();
            try {
                // Each storm starts with the victim served through the proxy again: a restart takes
                // its close window, long enough for a health check to have marked it down.
                await servedAgain(fleet, proxy.target, victim);
                results.push(await storm(fleet, "backend restarts", proxy.name, proxy.target, plan, restart));
                await servedAgain(fleet, proxy.target, victim);
                results.push(await storm(fleet, "backend dies", proxy.name, proxy.target, plan, kill));
                await revive();
            } finally {
                await proxy.stop();
            }
        }
        await spreadCloses(plan, context, victim, fleet, run.spread);
    } finally {
        await stack.stop();
    }
}

/** Until sockets through `target` reach `backend` again (at most 60 s). */
async function servedAgain(fleet: LoadFleet, target: TlsTarget, backend: string): Promise<void> {
    for (let round = 0; round < 60; round++) {
        await fleet.send(0, { cmd: "open", target, count: 30, addresses: LoadFleet.addresses(0), concurrency: 30, deadlineMs: 10000 });
        const status = await fleet.send(0, { cmd: "status" });
        await fleet.send(0, { cmd: "close" });
        if ((status.perBackend as Record<string, number>)[backend]) return;
        await sleep(1000);
    }
    throw new Error(`storms: ${backend} is not served again through the edge`);
}

/** A backend stops for a deploy (SIGTERM, then started again) with its closes at once and spread; HAProxy reloads with close-spread-time. */
async function spreadCloses(
    plan: StormPlan,
    context: BenchContext,
    victim: string,
    fleet: LoadFleet,
    results: SpreadResult[],
): Promise<void> {
    const { stack } = context;
    const edge = wssEdge(context);
    for (const [seconds, honourHints] of [
        [0, false],
        [plan.closeSpreadSeconds, true],
    ] as const) {
        // The victim reads its window when it starts: restarted under the new setting first, and
        // served again by the edge (its health agent takes it back after two good checks).
        await stack.reconfigure({ closeSpreadSeconds: String(seconds) });
        await stack.stopBackend(victim, "SIGINT");
        await stack.restartBackend(victim);
        await servedAgain(fleet, edge.target, victim);
        const scenario = seconds === 0 ? "backend stops, closes at once" : `backend stops, closes spread over ${seconds} s`;
        results.push(
            await spreadStorm(fleet, scenario, edge.name, edge.target, plan, honourHints, async () => {
                await stack.stopBackend(victim, "SIGTERM");
                await stack.restartBackend(victim);
            }),
        );
    }
    const reloading = await haproxy(context, 1, { closeSpreadSeconds: plan.closeSpreadSeconds });
    try {
        results.push(
            await spreadStorm(
                fleet,
                `HAProxy reloads, close-spread-time ${plan.closeSpreadSeconds}s`,
                reloading.name,
                reloading.target,
                plan,
                true,
                () => reloading.reload?.() ?? Promise.resolve(),
            ),
        );
    } finally {
        await reloading.stop();
    }
}

/** 3 → 4 backends under `plan.sockets` sockets (a room each in query mode); each client reconnects as soon as it is closed. */
async function scaleOut(plan: StormPlan, dir: string, fileLimit: number, fleet: LoadFleet, affinity: string): Promise<RebalanceResult> {
    const stack = await LocalStack.start({
        stateDir: join(dir, `rebalance-${affinity.replace(":", "-")}`),
        edgePort: 0,
        workerProcesses: 2,
        settings: { affinity, rebalanceSeconds: String(plan.rebalanceSeconds) },
    });
    try {
        const base = wssEdge({ stack, dir, fileLimit }).target;
        const per = Math.ceil(plan.sockets / fleet.size);
        // A room per socket: room n of generator g. (ws keeps the URL's query on every reconnect.)
        const targetOf = (g: number): TlsTarget =>
            affinity === "client-address"
                ? base
                : { ...base, urls: Array.from({ length: per }, (_, i) => `${base.urls[0]}?room=g${g}-${i}`) };
        for (let g = 0; g < fleet.size; g++)
            await fleet.send(g, {
                cmd: "open",
                target: targetOf(g),
                count: per,
                addresses: LoadFleet.addresses(g),
                concurrency: 64,
                deadlineMs: 120000,
            });
        const ratio = (counts: Record<string, number>) => Math.max(...Object.values(counts)) / Math.min(...Object.values(counts));
        const perBackend = async () => {
            const merged: Record<string, number> = {};
            for (const status of await fleet.all(() => ({ cmd: "status" })))
                for (const [name, n] of Object.entries(status.perBackend as Record<string, number>)) merged[name] = (merged[name] ?? 0) + n;
            return merged;
        };
        const ratioBefore = ratio(await perBackend());
        for (let g = 0; g < fleet.size; g++)
            await fleet.send(g, { cmd: "follow", target: targetOf(g), honourHints: false, deadlineMs: 60000 });
        const started = Date.now();
        await stack.reconfigure({ backendCount: "4" });
        await sleep(plan.rebalanceSeconds * 1000);
        const replies = await fleet.all(() => ({ cmd: "followed", deadlineMs: 90000 }));
        const rejoins = replies.flatMap((r, g) => (r.rejoins as Rejoin[]).map((j) => ({ ...j, generator: g })));
        const served = rejoins.filter((r) => r.servedAt !== undefined);
        const closesPerClient = new Map<string, number>();
        for (const r of rejoins)
            closesPerClient.set(`${r.generator}:${r.client}`, (closesPerClient.get(`${r.generator}:${r.client}`) ?? 0) + 1);
        const after = await perBackend();
        const result: RebalanceResult = {
            scenario: "3 → 4 backends",
            affinity,
            sockets: per * fleet.size,
            rebalanceSeconds: plan.rebalanceSeconds,
            moved: served.filter((r) => r.backendAfter !== r.backendBefore).length,
            served: served.length,
            movedTwice: [...closesPerClient.values()].filter((n) => n > 1).length,
            lastServedMs: Math.max(0, ...served.map((r) => (r.servedAt as number) - started)),
            peakSessionsPerSecond: peakPerSecond(served.map((r) => r.servedAt as number)),
            ratioBefore,
            ratioAfter: ratio(after),
            perBackendAfter: after,
        };
        log(
            `rebalance, ${affinity}: ${result.moved} of ${result.sockets} moved (${result.movedTwice} twice); last served ${result.lastServedMs} ms after the change; peak ${result.peakSessionsPerSecond}/s; largest/smallest ${ratioBefore.toFixed(2)} → ${result.ratioAfter.toFixed(2)} ${JSON.stringify(after)}`,
        );
        return result;
    } finally {
        await fleet.all(() => ({ cmd: "close" })).catch(() => undefined);
        await stack.stop();
    }
}

/** One of two proxies of the load-balanced twin dies. */
async function stormOnTheTier(plan: StormPlan, dir: string, fileLimit: number, fleet: LoadFleet, results: StormResult[]): Promise<void> {
    const tier = await LocalStack.start({
        stateDir: join(dir, "storm-tier"),
        edgePort: 0,
        workerProcesses: 2,
        settings: { proxyCount: "2" },
    });
    try {
        const target = wssEdge({ stack: tier, dir, fileLimit }).target;
        results.push(
            await storm(fleet, "proxy dies", "wss-edge ×2 behind HAProxy", target, plan, async () => {
                const master = tier.nginxMasterPid("proxy-1");
                if (!master) throw new Error("storms: proxy-1 is not running");
                for (const pid of [master, ...childPids(master)]) process.kill(pid, "SIGKILL");
                await sleep(200);
            }),
        );
    } finally {
        await tier.stop();
    }
}

export function spreadTable(results: readonly SpreadResult[]): string {
    return [
        "| Stop | Proxy | Reconnecting | Served | Closes over ms | p50 ms | p99 ms | max ms (each from its close) | Peak new sessions/s | Back on their backend |",
        "|---|---|---|---|---|---|---|---|---|---|",
        ...results.map(
            (r) =>
                `| ${r.scenario} | ${r.proxy} | ${r.reconnecting} of ${r.sockets} | ${r.served} | ${r.closeSpanMs} | ${r.p50Ms} | ${r.p99Ms} | ${r.maxMs} | ${r.peakSessionsPerSecond} | ${r.sameBackend} |`,
        ),
    ].join("\n");
}

/** Both tables of a run, as the report shows them. */
export function stormRunMarkdown(run: StormRun): string {
    return [
        stormTable(run.storms),
        "",
        "### Spread closes",
        "",
        "Each client reconnects as its socket closes (after the close's retry-after-ms hint, when it has one); times are from each client's own close to its next hello.",
        "",
        spreadTable(run.spread),
        "",
        "### Rebalancing after scale-out",
        "",
        "3 → 4 backends under open sockets (client-address: a /24 each; query: a room each); each client reconnects as soon as it is closed. Moved: closed with 1012 and served again on another backend.",
        "",
        rebalanceTable(run.rebalance),
    ].join("\n");
}

export function rebalanceTable(results: readonly RebalanceResult[]): string {
    return [
        "| Change | Affinity | Sockets | Window s | Moved | Moved twice | Last served ms after the change | Peak new sessions/s | Largest/smallest before → after |",
        "|---|---|---|---|---|---|---|---|---|",
        ...results.map(
            (r) =>
                `| ${r.scenario} | ${r.affinity} | ${r.sockets} | ${r.rebalanceSeconds} | ${r.moved} | ${r.movedTwice} | ${r.lastServedMs} | ${r.peakSessionsPerSecond} | ${r.ratioBefore.toFixed(2)} → ${r.ratioAfter.toFixed(2)} |`,
        ),
    ].join("\n");
}

export function stormTable(results: readonly StormResult[]): string {
    const errors = (e: Record<string, number>) =>
        Object.entries(e)
            .sort((a, b) => b[1] - a[1])
            .slice(0, 2)
            .map(([reason, n]) => `${n}× ${reason}`)
            .join("; ") || "—";
    return [
        "| Storm | Proxy | Reconnecting | Served | p50 ms | p99 ms | max ms | Attempts each | Back on their backend | Failed attempts (most frequent) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        ...results.map(
            (r) =>
                `| ${r.scenario} | ${r.proxy} | ${r.reconnecting} of ${r.sockets} | ${r.served} | ${r.p50Ms} | ${r.p99Ms} | ${r.maxMs} | ${r.attemptsPerClient.toFixed(1)} | ${r.sameBackend} | ${errors(r.errors)} |`,
        ),
    ].join("\n");
}

if (require.main === module) {
    runSectionAlone("storms", "Reconnect storms", async (quick, dir) =>
        stormRunMarkdown(await runStorms(quick ? quickStormPlan : fullStormPlan, dir)),
    );
}
