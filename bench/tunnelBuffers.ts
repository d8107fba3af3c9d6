/**
 * The tunnelBufferKiB setting (proxy_buffer_size) measured from both sides in one run: for each
 * size, the proxy's memory per held socket (PSS over NGINX's processes, fresh workers) and its CPU
 * per echoed message at small, medium and large sizes. An upgraded socket keeps two buffers of
 * this size for its life, one per direction; a message larger than the buffer crosses in several
 * reads and TLS records.
 */
import type { LocalStack } from "../local/localStack";
import { sleep } from "../local/processes";
import type { TlsTarget } from "./loadClient";
import { LoadFleet } from "./loadFleet";
import { type ProxyUnderTest, pidsUnder, proportionalSetKiB } from "./proxies";
import { benchLogger, sum } from "./stats";
import { measureThroughput } from "./throughput";

export interface TunnelBufferPlan {
    readonly sizesKiB: readonly number[];
    /** Sockets held for the memory measure. */
    readonly sockets: number;
    readonly messageSizes: readonly number[];
    readonly rounds: number;
    readonly seconds: number;
}

export interface TunnelBufferResult {
    readonly bufferKiB: number;
    readonly sockets: number;
    readonly kibPerSocket: number;
    /** By message size in bytes. */
    readonly cpuUsPerMessage: Record<number, number | undefined>;
    readonly messagesPerSecond: Record<number, number>;
}

const log = benchLogger("bench");

export async function sweepTunnelBuffers(
    stack: LocalStack,
    proxy: ProxyUnderTest,
    directTarget: TlsTarget,
    fleet: LoadFleet,
    plan: {
        readonly tunnelBuffers: TunnelBufferPlan;
        readonly throughput: { readonly sockets: number; readonly inflight: number };
        /** Pause for the proxy's memory to settle after opening and after closing. */
        readonly settleMs: number;
    },
    workers: number,
): Promise<TunnelBufferResult[]> {
    const sweep = plan.tunnelBuffers;
    const results: TunnelBufferResult[] = [];
    for (const bufferKiB of sweep.sizesKiB) {
        await stack.reconfigure({ tunnelBufferKiB: String(bufferKiB) });
        // The reload's old workers leave once idle; measure only the new ones.
        const master = stack.nginxMasterPid() ?? 0;
        for (let i = 0; i < 100 && pidsUnder(master).length > workers + 1; i++) await sleep(100);
        await sleep(plan.settleMs);
        const baseline = proportionalSetKiB(proxy.processes());
        const per = Math.ceil(sweep.sockets / fleet.size);
        const opened = await fleet.all((n) => ({
            cmd: "open",
            target: proxy.target,
            count: per,
            addresses: LoadFleet.addresses(n),
            concurrency: 64,
            deadlineMs: 300000,
        }));
        const held = sum(opened.map((r) => r.opened as number));
        await sleep(plan.settleMs);
        const kibPerSocket = (proportionalSetKiB(proxy.processes()) - baseline) / Math.max(1, held);
        await fleet.all(() => ({ cmd: "close" }));
        await sleep(plan.settleMs);

        const cpuUsPerMessage: Record<number, number | undefined> = {};
        const messagesPerSecond: Record<number, number> = {};
        for (const size of sweep.messageSizes) {
            // The rounds run over sockets the first generator holds through the proxy.
            await fleet.send(0, {
                cmd: "open",
                target: proxy.target,
                count: plan.throughput.sockets,
                addresses: LoadFleet.addresses(0),
                concurrency: 50,
                deadlineMs: 60000,
            });
            const throughput = await measureThroughput(proxy, directTarget, fleet, {
                sockets: plan.throughput.sockets,
                inflight: plan.throughput.inflight,
                size,
                seconds: sweep.seconds,
                rounds: sweep.rounds,
            });
            cpuUsPerMessage[size] = throughput.proxyCpuUsPerMessage;
            messagesPerSecond[size] = throughput.messagesPerSecond;
            await fleet.all(() => ({ cmd: "close" }));
        }
        results.push({ bufferKiB, sockets: held, kibPerSocket, cpuUsPerMessage, messagesPerSecond });
        log(
            `  proxy_buffer_size ${bufferKiB}k: ${kibPerSocket.toFixed(1)} KiB/socket at ${held} sockets; proxy CPU µs/msg ${sweep.messageSizes.map((m) => `${m} B ${cpuUsPerMessage[m]?.toFixed(1) ?? "-"}`).join(", ")}`,
        );
    }
    return results;
}

export function tunnelBufferTable(results: readonly TunnelBufferResult[]): string {
    const sizes = Object.keys(results[0]?.cpuUsPerMessage ?? {}).map(Number);
    const label = (bytes: number) => (bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`);
    return [
        `| proxy_buffer_size | Sockets | Proxy KiB/socket | ${sizes.map((m) => `CPU µs/msg ${label(m)}`).join(" | ")} | ${sizes.map((m) => `Msg/s ${label(m)}`).join(" | ")} |`,
        `|---|---|---|${sizes.map(() => "---|").join("")}${sizes.map(() => "---|").join("")}`,
        ...results.map(
            (r) =>
                `| ${r.bufferKiB}k | ${r.sockets} | ${r.kibPerSocket.toFixed(1)} | ${sizes.map((m) => r.cpuUsPerMessage[m]?.toFixed(1) ?? "–").join(" | ")} | ${sizes.map((m) => Math.round(r.messagesPerSecond[m])).join(" | ")} |`,
        ),
    ].join("\n");
}
