/**
 * The scale step: this project's edge holding sockets in steps up to 100,000 for a minute, with
 * NGINX's memory per socket at each step. Shaped by this machine's limits, as a VM's would be by
 * its own: every process may hold 20,000 descriptors, so the sockets spread over enough NGINX
 * workers (two descriptors per socket), backends and generator processes (one each); clients
 * come from 250 /24s per generator, so no source/destination pair runs out of ports.
 *
 *   npm run bench:scale [-- --quick]
 */
import { join } from "node:path";
import { LocalStack } from "../local/localStack";
import { hardFileLimit, sleep } from "../local/processes";
import { settingsTable } from "../settings/settingsTable";
import { LoadFleet } from "./loadFleet";
import { pidsUnder, proportionalSetKiB, wssEdge } from "./proxies";
import { runSectionAlone } from "./sectionAlone";
import { benchLogger, sum } from "./stats";

export interface ScalePlan {
    readonly steps: readonly number[];
    readonly holdSeconds: number;
    /** Pause for NGINX's memory to settle after each step. */
    readonly settleMs: number;
}

export const fullScalePlan: ScalePlan = { steps: [5000, 25000, 50000, 100000], holdSeconds: 60, settleMs: 2000 };
export const quickScalePlan: ScalePlan = { steps: [100, 200], holdSeconds: 1, settleMs: 200 };

export interface ScaleResult {
    readonly workers: number;
    readonly backends: number;
    readonly generators: number;
    /** The backends' ping interval during the step (see scalePingSeconds). */
    readonly pingSeconds: number;
    readonly steps: { readonly sockets: number; readonly failed: number; readonly proxyMiB: number; readonly kibPerSocket: number }[];
    readonly hold: { readonly sockets: number; readonly seconds: number; readonly drops: number };
}

/**
 * The backends' keepalive pings during the scale step: every 240 s, inside NGINX's default 300 s
 * idle timeout, so each socket still carries a ping before it could time out. As deployed they
 * come every 30 s; at 100,000 sockets that is 3,300 pings a second, each a JavaScript event in a
 * backend and in a generator, and these two cores, which here also run the eight Node backends and
 * the generators, spent themselves on them: opening slowed from 110 to 15 sockets a second past
 * 60,000. On the VM, backends and clients are other machines; NGINX's own share of 30 s pings is
 * two relayed messages each (see the throughput row for its CPU per message).
 */
export const scalePingSeconds = Math.floor(settingsTable.idleTimeoutSeconds.default * 0.8);

const log = benchLogger("scale");

/** Processes needed so that none holds more than 70% of its descriptors at `sockets`. */
export function scaleShape(sockets: number, fileLimit = hardFileLimit()): { workers: number; backends: number; generators: number } {
    const perProcess = Math.floor(fileLimit * 0.7);
    return {
        // A worker holds both sides of each socket it proxies; the kernel spreads sockets over workers unevenly.
        workers: Math.max(2, Math.ceil((2 * sockets) / perProcess)),
        backends: Math.min(20, Math.max(3, Math.ceil(sockets / perProcess))),
        generators: Math.max(2, Math.ceil(sockets / perProcess)),
    };
}

export async function holdAtScale(plan: ScalePlan, dir: string): Promise<ScaleResult> {
    const top = Math.max(...plan.steps);
    const shape = scaleShape(top);
    log(
        `up to ${top} sockets: ${shape.workers} NGINX workers, ${shape.backends} backends, ${shape.generators} generator processes; backends ping every ${scalePingSeconds} s`,
    );
    const stack = await LocalStack.start({
        stateDir: join(dir, "scale-stack"),
        edgePort: 0,
        workerProcesses: shape.workers,
        settings: { backendCount: String(shape.backends) },
        pingIntervalSeconds: scalePingSeconds,
    });
    const fleet = await LoadFleet.start(shape.generators);
    try {
        const proxy = wssEdge({ stack, dir, fileLimit: hardFileLimit() });
        const master = stack.nginxMasterPid() ?? 0;
        await sleep(plan.settleMs);
        const baseline = proportionalSetKiB(pidsUnder(master));
        const steps: ScaleResult["steps"] = [];
        let held = 0;
        for (const step of plan.steps) {
            const per = Math.ceil((step - held) / fleet.size);
            const replies = await fleet.all((n) => ({
                cmd: "open",
                target: proxy.target,
                count: per,
                addresses: LoadFleet.addresses(n),
                // Handshakes in flight per generator: more only queue on this machine's two cores,
                // and one queued past NGINX's 10 s client_header_timeout is closed unanswered.
                concurrency: 16,
                deadlineMs: 1800000,
            }));
            held += sum(replies.map((r) => r.opened as number));
            const failed = sum(replies.map((r) => r.failed as number));
            await sleep(plan.settleMs);
            const kib = proportionalSetKiB(pidsUnder(master));
            steps.push({ sockets: held, failed, proxyMiB: kib / 1024, kibPerSocket: (kib - baseline) / Math.max(1, held) });
            log(
                `holding ${held} (${failed} failed): NGINX ${(kib / 1024).toFixed(0)} MiB, ${((kib - baseline) / held).toFixed(1)} KiB/socket`,
            );
            if (failed > 0) log(`  errors: ${replies.map((r) => JSON.stringify(r.errors)).join(" ")}`);
        }
        await sleep(plan.holdSeconds * 1000);
        const status = await fleet.all(() => ({ cmd: "status" }));
        const hold = { sockets: held, seconds: plan.holdSeconds, drops: sum(status.map((s) => s.drops as number)) };
        log(`held ${held} sockets for ${plan.holdSeconds} s: ${hold.drops} dropped`);
        return { ...shape, pingSeconds: scalePingSeconds, steps, hold };
    } finally {
        await fleet.all(() => ({ cmd: "close" })).catch(() => undefined);
        await fleet.stop();
        await stack.stop();
    }
}

export function scaleTable(result: ScaleResult): string {
    return [
        `${result.workers} NGINX workers, ${result.backends} backends, ${result.generators} generator processes, backends pinging every socket every ${result.pingSeconds} s; held ${result.hold.sockets.toLocaleString("en-US")} sockets for ${result.hold.seconds} s: **${result.hold.drops} dropped**.`,
        "",
        "| Sockets held | Failed to open | NGINX memory MiB | KiB/socket |",
        "|---|---|---|---|",
        ...result.steps.map(
            (s) => `| ${s.sockets.toLocaleString("en-US")} | ${s.failed} | ${s.proxyMiB.toFixed(0)} | ${s.kibPerSocket.toFixed(1)} |`,
        ),
    ].join("\n");
}

if (require.main === module) {
    runSectionAlone("scale", "Scale step", async (quick, dir) =>
        scaleTable(await holdAtScale(quick ? quickScalePlan : fullScalePlan, dir)),
    );
}
