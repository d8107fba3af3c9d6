import type { Reply, TlsTarget } from "./loadClient";
import { LoadFleet } from "./loadFleet";
import { cpuTimeMs, type ProxyUnderTest } from "./proxies";
import type { Throughput } from "./report";
import { median, sum } from "./stats";

export interface ThroughputPlan {
    readonly sockets: number;
    readonly size: number;
    readonly inflight: number;
    readonly seconds: number;
    readonly rounds: number;
}

/**
 * Messages per second through the proxy, and its own CPU per message. On this machine direct's
 * rate moves by ±15% from one few-second window to the next, so a single window per configuration
 * cannot tell 0.8× from 0.9×. Instead the proxy's rounds alternate (ABBA) with rounds over direct
 * sockets to the same backends, held by the last generator process, and the ratio is the median
 * of the side-by-side pairs; the JSON keeps every round.
 */
export async function measureThroughput(
    proxy: ProxyUnderTest,
    directTarget: TlsTarget,
    fleet: LoadFleet,
    plan: ThroughputPlan,
): Promise<Throughput> {
    const paired = proxy.name !== "direct";
    const directGenerator = fleet.size - 1;
    if (paired) {
        const opened = await fleet.send(directGenerator, {
            cmd: "open",
            target: directTarget,
            count: plan.sockets,
            addresses: LoadFleet.addresses(directGenerator),
            concurrency: 50,
            deadlineMs: 60000,
        });
        if ((opened.opened as number) < plan.sockets)
            throw new Error(
                `bench: only ${opened.opened} of ${plan.sockets} direct sockets opened for the throughput baseline (${JSON.stringify(opened.errors)})`,
            );
    }
    const round = (generator: number) =>
        fleet.send(generator, {
            cmd: "throughput",
            sockets: plan.sockets,
            size: plan.size,
            inflight: plan.inflight,
            durationMs: plan.seconds * 1000,
        });
    const perSecond = (reply: { messages: number; wallMs: number }) => reply.messages / (reply.wallMs / 1000);
    let proxyCpuMs = 0;
    const throughProxy = async () => {
        const cpuBefore = cpuTimeMs(proxy.processes());
        const reply = await round(0);
        proxyCpuMs += cpuTimeMs(proxy.processes()) - cpuBefore;
        return reply;
    };
    const straight = async () => {
        if (!paired) return undefined;
        const reply = await round(directGenerator);
        return perSecond({ messages: reply.messages as number, wallMs: reply.wallMs });
    };
    const rounds: Throughput["rounds"] = [];
    for (let r = 0; r < plan.rounds; r++) {
        // ABBA: which side goes first alternates, so drift within a pair favours neither.
        let through: Reply;
        let directMessagesPerSecond: number | undefined;
        if (r % 2 === 0) {
            through = await throughProxy();
            directMessagesPerSecond = await straight();
        } else {
            directMessagesPerSecond = await straight();
            through = await throughProxy();
        }
        rounds.push({
            messages: through.messages as number,
            wallMs: through.wallMs,
            generatorCpuMs: through.cpuMs,
            directMessagesPerSecond,
        });
    }
    const messages = sum(rounds.map((r) => r.messages));
    const wallMs = sum(rounds.map((r) => r.wallMs));
    const ratios = rounds.flatMap((r) => (r.directMessagesPerSecond ? [perSecond(r) / r.directMessagesPerSecond] : []));
    return {
        sockets: plan.sockets,
        size: plan.size,
        messagesPerSecond: median(rounds.map(perSecond)),
        megabytesPerSecond: (messages * plan.size * 2) / (wallMs / 1000) / 1e6,
        proxyCpuUsPerMessage: proxy.processes().length > 0 ? (proxyCpuMs * 1000) / Math.max(1, messages) : undefined,
        generatorCores: sum(rounds.map((r) => r.generatorCpuMs)) / wallMs,
        vsDirect: ratios.length ? { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) } : undefined,
        rounds,
    };
}
