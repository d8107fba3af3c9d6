/**
 * npm run bench [-- --quick] [-- --only wss-edge,haproxy,buffers,scale,storms] [-- --shared-cores]
 *
 * Runs the local topology once per configuration — direct to the backends, this project's
 * NGINX, the tutorial's config, HAProxy and Caddy — and measures sessions per second, echo
 * latency, throughput with the proxy's own CPU per message, sockets held with the proxy's
 * memory per socket, and reconnect storms (bench/storms.ts). All traffic stays on loopback; every scenario is
 * bounded in count and time. Results: bench/results/latest.{json,md,svg}.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LocalStack } from "../local/localStack";
import { sleep } from "../local/processes";
import { benchMain } from "./benchMain";
import { planCpuPlacement } from "./cpuPlacement";
import type { TlsTarget } from "./loadClient";
import { LoadFleet } from "./loadFleet";
import {
    type BenchContext,
    caddy,
    cpuTimeMs,
    direct,
    haproxy,
    type ProxyUnderTest,
    proportionalSetKiB,
    tutorial,
    wssEdge,
} from "./proxies";
import { type BenchResults, type ProxyResult, writeReport } from "./report";
import { fullScalePlan, holdAtScale, quickScalePlan, type ScalePlan, type ScaleResult } from "./scale";
import { benchLogger, sum } from "./stats";
import { fullStormPlan, quickStormPlan, runStorms, type StormPlan, type StormRun } from "./storms";
import { measureThroughput, type ThroughputPlan } from "./throughput";
import { sweepTunnelBuffers, type TunnelBufferPlan, type TunnelBufferResult } from "./tunnelBuffers";

interface Plan {
    readonly socketSteps: readonly number[];
    readonly holdSeconds: number;
    readonly sessions: number;
    readonly sessionConcurrency: number;
    readonly latencySockets: readonly number[];
    readonly latencySeconds: number;
    readonly messageSizes: readonly number[];
    /** Rounds alternate with direct connections to the same backends; see measureThroughput. */
    readonly throughput: ThroughputPlan;
    readonly storms: StormPlan;
    /** The tunnel-buffer sweep: sizes (KiB), sockets held for each, message sizes. */
    readonly tunnelBuffers: TunnelBufferPlan;
    /** The scale step: this project's edge alone, up to 100,000 sockets. */
    readonly scale: ScalePlan;
    readonly loadProcesses: number;
    /** NGINX workers for holding sockets: enough that each stays under the descriptor limit. */
    readonly nginxWorkersForHolding: number;
    readonly haproxyProcesses: number;
    /** Pause for the proxy's memory to settle after a step, and after closing sockets. */
    readonly settleMs: number;
    /**
     * For figures that compare: each configuration starts with fresh backends and generators, the
     * proxy has a core of its own (unless --shared-cores), and the sections run one after another.
     * Without it (--quick, whose counts are too small to compare anyway) generators are shared,
     * every process may use every core, and the scale step and the storms, which bring their own
     * stacks, run beside the rest.
     */
    readonly comparable: boolean;
}

const fullPlan: Plan = {
    socketSteps: [5000, 9000, 25000, 50000],
    holdSeconds: 60,
    sessions: 3000,
    sessionConcurrency: 32,
    latencySockets: [1, 100, 1000],
    latencySeconds: 4,
    messageSizes: [64, 16384],
    throughput: { sockets: 100, size: 1024, inflight: 8, seconds: 4, rounds: 6 },
    storms: fullStormPlan,
    scale: fullScalePlan,
    tunnelBuffers: { sizesKiB: [1, 2, 4, 16], sockets: 10000, messageSizes: [64, 1024, 16384], rounds: 2, seconds: 4 },
    loadProcesses: 5,
    nginxWorkersForHolding: 8,
    haproxyProcesses: 6,
    settleMs: 2000,
    comparable: true,
};

/** Small counts, under a minute in all: what CI runs so the bench cannot rot. */
const quickPlan: Plan = {
    socketSteps: [50, 100],
    holdSeconds: 0.5,
    sessions: 40,
    sessionConcurrency: 8,
    latencySockets: [1, 20],
    latencySeconds: 0.2,
    messageSizes: [64, 16384],
    throughput: { sockets: 10, size: 1024, inflight: 4, seconds: 0.2, rounds: 1 },
    storms: quickStormPlan,
    scale: quickScalePlan,
    tunnelBuffers: { sizesKiB: [1, 4, 16], sockets: 50, messageSizes: [64, 1024, 16384], rounds: 1, seconds: 0.2 },
    loadProcesses: 2,
    nginxWorkersForHolding: 2,
    haproxyProcesses: 1,
    settleMs: 100,
    comparable: false,
};

const log = benchLogger("bench");

async function main(dir: string): Promise<void> {
    const { values } = parseArgs({
        options: {
            quick: { type: "boolean", default: false },
            only: { type: "string" },
            "shared-cores": { type: "boolean", default: false },
        },
    });
    const plan = values.quick ? quickPlan : fullPlan;
    const only = values.only?.split(",");
    const fileLimit = Number(execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim());
    const placement = values["shared-cores"] || !plan.comparable ? undefined : planCpuPlacement(cpus().length);
    placement?.pinLoad(process.pid);
    const cpuNote = placement
        ? `proxy on core(s) ${placement.proxyCores}, generator and backends on ${placement.loadCores}`
        : "proxy, generator and backends share all cores";
    log(
        `plan: ${values.quick ? "quick" : "full"}; ${cpus().length} cores (${cpuNote}); ${fileLimit} descriptors per process; state in ${dir}`,
    );
    const wanted = (section: string) => !only || only.includes(section);

    const results: ProxyResult[] = [];
    let tunnelBuffers: TunnelBufferResult[] | undefined;
    let storms: StormRun | undefined;
    let scale: ScaleResult | undefined;
    const proxiesAndBuffers = async () => {
        // One worker per proxy core, as `worker_processes auto` gives on a VM that size; more only to hold sockets.
        const workers = placement?.proxyCoreCount ?? cpus().length;
        const stack = await LocalStack.start({ stateDir: join(dir, "stack"), edgePort: 0, workerProcesses: workers });
        const context: BenchContext = { stack, dir, fileLimit };
        // Comparable runs give each configuration fresh generators: one that has just closed 50,000
        // sockets spends twice the CPU per new session for a while, which would count against the next.
        const shared = plan.comparable ? undefined : await LoadFleet.start(plan.loadProcesses);
        const generators = async () => shared ?? (await LoadFleet.start(plan.loadProcesses));
        try {
            const factories: [string, () => Promise<ProxyUnderTest> | ProxyUnderTest][] = [
                ["direct", () => direct(context)],
                ["wss-edge", () => wssEdge(context)],
                ["tutorial", () => tutorial(context)],
                ["haproxy", () => haproxy(context, plan.haproxyProcesses)],
                ["caddy", () => caddy(context)],
            ];
            for (const [name, make] of factories) {
                if (!wanted(name)) continue;
                if (plan.comparable) await freshBackends(stack, plan.settleMs);
                const proxy = await make();
                const fleet = await generators();
                try {
                    placement?.pinProxy(proxy.processes());
                    log(`— ${proxy.name}: ${proxy.description}`);
                    results.push(await measure(proxy, direct(context).target, stack, fleet, plan, workers));
                } finally {
                    await fleet.all(() => ({ cmd: "close" })).catch(() => undefined);
                    if (fleet !== shared) await fleet.stop();
                    await proxy.stop();
                }
            }
            if (wanted("buffers")) {
                if (plan.comparable) await freshBackends(stack, plan.settleMs);
                const fleet = await generators();
                try {
                    log("— tunnel buffers: memory per socket and proxy CPU per message for each proxy_buffer_size");
                    tunnelBuffers = await sweepTunnelBuffers(stack, wssEdge(context), direct(context).target, fleet, plan, workers);
                } finally {
                    if (fleet !== shared) await fleet.stop();
                }
            }
        } finally {
            await shared?.stop();
            await stack.stop();
        }
    };
    const scaleStep = async () => {
        if (!wanted("scale")) return;
        log(`— scale: this project's edge holding up to ${Math.max(...plan.scale.steps)} sockets`);
        scale = await holdAtScale(plan.scale, dir);
    };
    const reconnectStorms = async () => {
        if (!wanted("storms")) return;
        log("— reconnect storms: a backend restarts, a backend dies, a proxy dies; a backend stops with its closes spread");
        storms = await runStorms(plan.storms, dir);
    };
    const sections = [proxiesAndBuffers, scaleStep, reconnectStorms];
    if (plan.comparable) for (const section of sections) await section();
    else await allSettledOrThrow(sections.map((section) => section()));
    const report: BenchResults = {
        date: new Date().toISOString(),
        plan: values.quick ? "quick" : "full",
        machine: {
            cores: cpus().length,
            cpuPlacement: cpuNote,
            model: cpus()[0]?.model ?? "unknown",
            fileLimitPerProcess: fileLimit,
            nginx: versionOf("nginx", ["-v"]),
            haproxy: versionOf("haproxy", ["-v"]),
            caddy: versionOf("caddy", ["version"]),
            node: process.version,
        },
        results,
        storms,
        tunnelBuffers,
        scale,
    };
    // A partial run (--only) never replaces the full run's committed results.
    const stem = values.quick ? "quick" : only ? `only-${only.join("-")}` : "latest";
    const written = writeReport(report, join(__dirname, "results"), stem);
    log(`results: ${written.join(", ")}`);
}

async function measure(
    proxy: ProxyUnderTest,
    directTarget: TlsTarget,
    stack: LocalStack,
    fleet: LoadFleet,
    plan: Plan,
    nginxWorkers: number,
): Promise<ProxyResult> {
    const result: ProxyResult = { name: proxy.name, description: proxy.description, sessions: {}, latency: [], holding: [], notes: [] };
    const target = proxy.target;
    // Memory before any socket: later scenarios leave heap behind that holding would then reuse.
    let baselineKiB = proportionalSetKiB(proxy.processes());
    const proxyCpu = () => cpuTimeMs(proxy.processes());
    const generatorShare = (replies: { cpuMs: number; wallMs: number }[]) =>
        sum(replies.map((r) => r.cpuMs)) / Math.max(...replies.map((r) => r.wallMs));

    // 1. New sessions per second, without and with TLS session resumption.
    for (const resume of [false, true]) {
        const per = Math.ceil(plan.sessions / fleet.size);
        const cpuBefore = proxyCpu();
        const replies = await fleet.all((n) => ({
            cmd: "sessions",
            target,
            count: per,
            addresses: LoadFleet.addresses(n),
            concurrency: plan.sessionConcurrency,
            resume,
            deadlineMs: 120000,
        }));
        const sessions = sum(replies.map((r) => r.sessions as number));
        const seconds = Math.max(...replies.map((r) => r.seconds as number));
        const failed = sum(replies.map((r) => r.failed as number));
        result.sessions[resume ? "resumed" : "full"] = {
            perSecond: sessions / seconds,
            failed,
            proxyCpuMsPerSession: (proxyCpu() - cpuBefore) / Math.max(1, sessions),
            generatorCores: generatorShare(replies),
        };
        log(
            `  sessions ${resume ? "resumed" : "full handshake"}: ${(sessions / seconds).toFixed(0)}/s (${failed} failed, generator ${generatorShare(replies).toFixed(2)} cores)`,
        );
    }

    // 2. Echo latency, and 3. throughput, on sockets held by the first generator process.
    const latencyMax = Math.max(...plan.latencySockets, plan.throughput.sockets);
    const opened = await fleet.send(0, {
        cmd: "open",
        target,
        count: Math.min(latencyMax, proxy.socketCeiling?.sockets ?? Infinity),
        addresses: LoadFleet.addresses(0),
        concurrency: 50,
        deadlineMs: 60000,
    });
    if ((opened.failed as number) > 0)
        result.notes.push(`latency sockets: ${opened.failed} of ${latencyMax} failed to open (${JSON.stringify(opened.errors)})`);
    for (const sockets of plan.latencySockets) {
        for (const size of plan.messageSizes) {
            const reply = await fleet.send(0, { cmd: "echo", sockets, size, durationMs: plan.latencySeconds * 1000 });
            result.latency.push({
                sockets: reply.sockets as number,
                size,
                p50us: reply.p50us as number,
                p99us: reply.p99us as number,
                p999us: reply.p999us as number,
                generatorCores: reply.cpuMs / reply.wallMs,
            });
        }
        const row = result.latency.filter((l) => l.sockets <= sockets).at(-2);
        if (row) log(`  echo at ${row.sockets} sockets, 64 B: p50 ${row.p50us.toFixed(0)} µs, p99 ${row.p99us.toFixed(0)} µs`);
    }
    result.throughput = await measureThroughput(proxy, directTarget, fleet, plan.throughput);
    const tp = result.throughput;
    const paired = tp.vsDirect
        ? `, ${tp.vsDirect.median.toFixed(2)}× direct (rounds ${tp.vsDirect.min.toFixed(2)}–${tp.vsDirect.max.toFixed(2)})`
        : "";
    log(
        `  throughput: ${tp.messagesPerSecond.toFixed(0)} msg/s${paired}, ${tp.megabytesPerSecond.toFixed(1)} MB/s, proxy ${tp.proxyCpuUsPerMessage?.toFixed(1) ?? "-"} µs CPU/msg, generator ${tp.generatorCores.toFixed(2)} cores`,
    );
    await fleet.all(() => ({ cmd: "close" }));
    await sleep(plan.settleMs);

    // 4. Sockets held, in steps, with the proxy's memory per socket; hold the last step.
    if (proxy.name === "wss-edge" && plan.nginxWorkersForHolding !== nginxWorkers) {
        await stack.setWorkerProcesses(plan.nginxWorkersForHolding);
        await sleep(plan.settleMs);
        baselineKiB = proportionalSetKiB(proxy.processes()); // fresh workers, no sockets yet
        result.notes.push(
            `sockets held with ${plan.nginxWorkersForHolding} workers, so that none exceeds the per-process descriptor limit; the other scenarios ran with ${nginxWorkers}, one per proxy core`,
        );
    }
    let held = 0;
    const ceiling = proxy.socketCeiling?.sockets ?? Infinity;
    for (const planned of plan.socketSteps) {
        if (held >= ceiling) {
            result.notes.push(`not tried at ${planned} sockets: its ceiling here is ${ceiling} (${proxy.socketCeiling!.why})`);
            break;
        }
        const step = Math.min(planned, ceiling);
        const per = Math.ceil((step - held) / fleet.size);
        const replies = await fleet.all((n) => ({
            cmd: "open",
            target,
            count: per,
            addresses: LoadFleet.addresses(n),
            concurrency: 64,
            deadlineMs: 600000,
        }));
        const failed = sum(replies.map((r) => r.failed as number));
        held += sum(replies.map((r) => r.opened as number));
        await sleep(plan.settleMs);
        const kib = proportionalSetKiB(proxy.processes());
        result.holding.push({
            sockets: held,
            failed,
            proxyMemoryKiB: kib,
            kibPerSocket: proxy.processes().length > 0 ? (kib - baselineKiB) / Math.max(1, held) : undefined,
            generatorCores: generatorShare(replies),
        });
        log(
            `  holding ${held} sockets (${failed} failed): proxy ${(kib / 1024).toFixed(0)} MiB, ${proxy.processes().length ? ((kib - baselineKiB) / held).toFixed(1) : "-"} KiB/socket`,
        );
        if (failed > step * 0.01) {
            result.notes.push(`stopped at ${held} sockets: ${failed} failed to open (${JSON.stringify(replies.map((r) => r.errors))})`);
            break;
        }
    }
    await sleep(plan.holdSeconds * 1000);
    const status = await fleet.all(() => ({ cmd: "status" }));
    result.hold = { sockets: held, seconds: plan.holdSeconds, drops: sum(status.map((s) => s.drops as number)) };
    log(`  held ${held} sockets for ${plan.holdSeconds} s: ${result.hold.drops} dropped`);
    await fleet.all(() => ({ cmd: "close" }));
    await sleep(plan.settleMs);

    if (proxy.name === "wss-edge" && plan.nginxWorkersForHolding !== nginxWorkers) await stack.setWorkerProcesses(nginxWorkers);
    return result;
}

/**
 * Every configuration starts from new, idle backend processes: tearing down the previous one's
 * sockets keeps Node busy for a while and would count against whoever comes next.
 */
async function freshBackends(stack: LocalStack, settleMs: number): Promise<void> {
    await Promise.all(
        stack.backendNames().map(async (name) => {
            await stack.stopBackend(name, "SIGTERM");
            await stack.restartBackend(name);
        }),
    );
    await sleep(settleMs);
}

/** Waits for every section, so none is left running when one fails, then throws the first failure. */
async function allSettledOrThrow(running: Promise<void>[]): Promise<void> {
    const failed = (await Promise.allSettled(running)).find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
}

/** First line a binary prints about its version, on stdout or stderr (nginx uses stderr). */
function versionOf(binary: string, args: string[]): string {
    const result = spawnSync(binary, args, { encoding: "utf8" });
    if (result.error) return "not installed";
    return `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n")[0];
}

benchMain("bench", main);
