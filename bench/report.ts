import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ScaleResult, scaleTable } from "./scale";
import { type StormRun, stormRunMarkdown } from "./storms";
import { type TunnelBufferResult, tunnelBufferTable } from "./tunnelBuffers";

export interface ProxyResult {
    name: string;
    description: string;
    sessions: Partial<
        Record<"full" | "resumed", { perSecond: number; failed: number; proxyCpuMsPerSession: number; generatorCores: number }>
    >;
    latency: { sockets: number; size: number; p50us: number; p99us: number; p999us: number; generatorCores: number }[];
    throughput?: Throughput;
    holding: { sockets: number; failed: number; proxyMemoryKiB: number; kibPerSocket?: number; generatorCores: number }[];
    hold?: { sockets: number; seconds: number; drops: number };
    notes: string[];
}

export interface Throughput {
    sockets: number;
    size: number;
    /** Median over the rounds. */
    messagesPerSecond: number;
    megabytesPerSecond: number;
    proxyCpuUsPerMessage?: number;
    generatorCores: number;
    /** Each round's rate against the direct round beside it: the median, and the lowest and highest. */
    vsDirect?: { median: number; min: number; max: number };
    rounds: { messages: number; wallMs: number; generatorCpuMs: number; directMessagesPerSecond?: number }[];
}

export interface BenchResults {
    date: string;
    plan: "quick" | "full";
    machine: Record<string, string | number>;
    results: ProxyResult[];
    /** Reconnect storms (bench/storms.ts), when run. */
    storms?: StormRun;
    /** The tunnelBufferKiB sweep (bench/tunnelBuffers.ts), when run. */
    tunnelBuffers?: TunnelBufferResult[];
    /** The scale step (bench/scale.ts), when run. */
    scale?: ScaleResult;
}

const fmt = (n: number | undefined, digits = 0) =>
    n === undefined || !Number.isFinite(n)
        ? "–"
        : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const perCpuSecond = (cpuMsPerSession: number | undefined) => (cpuMsPerSession ? 1000 / cpuMsPerSession : undefined);
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !b ? undefined : a / b);

/** The comparison a reader wants: each configuration against direct, from the same run. */
export function summarize(report: BenchResults) {
    const direct = report.results.find((r) => r.name === "direct");
    const tutorial = report.results.find((r) => r.name === "tutorial");
    const p99At = (r: ProxyResult | undefined, size = 64) => {
        const rows = r?.latency.filter((l) => l.size === size) ?? [];
        return rows.at(-1);
    };
    return report.results.map((r) => {
        const lastHold = r.holding.at(-1);
        return {
            name: r.name,
            maxSockets: lastHold?.sockets ?? 0,
            drops: r.hold?.drops,
            kibPerSocket: lastHold?.kibPerSocket,
            sessionsFull: r.sessions.full?.perSecond,
            sessionsResumed: r.sessions.resumed?.perSecond,
            sessionsVsTutorial: ratio(r.sessions.full?.perSecond, tutorial?.sessions.full?.perSecond),
            // What the proxy could accept if it, not the generator, were the limit: sessions per second of its own CPU.
            sessionsPerProxyCpuSecond: perCpuSecond(r.sessions.full?.proxyCpuMsPerSession),
            capacityVsTutorial: ratio(
                perCpuSecond(r.sessions.full?.proxyCpuMsPerSession),
                perCpuSecond(tutorial?.sessions.full?.proxyCpuMsPerSession),
            ),
            p99Sockets: p99At(r)?.sockets,
            p99us: p99At(r)?.p99us,
            // Only against direct at the same socket count (a proxy with a low ceiling stops earlier).
            p99VsDirect: ratio(p99At(r)?.p99us, direct?.latency.find((l) => l.size === 64 && l.sockets === p99At(r)?.sockets)?.p99us),
            messagesPerSecond: r.throughput?.messagesPerSecond,
            throughputVsDirect: r.name === "direct" ? 1 : r.throughput?.vsDirect?.median,
            throughputVsDirectRange: r.throughput?.vsDirect,
            cpuUsPerMessage: r.throughput?.proxyCpuUsPerMessage,
        };
    });
}

export function markdown(report: BenchResults): string {
    const rows = summarize(report);
    const lines = [
        `# Benchmark: the WSS edge against direct connections and the alternatives`,
        "",
        `${report.plan === "quick" ? "Quick run (small counts, for CI)" : "Full run"} of ${report.date} on ${report.machine.cores} cores (${report.machine.model}), ${report.machine.fileLimitPerProcess} descriptors per process. ` +
            `${report.machine.nginx}; ${report.machine.haproxy}; Caddy ${report.machine.caddy}; Node ${report.machine.node}. Reproduce with \`npm run bench\`.`,
        "",
        `Ratios compare configurations measured in this same run; absolute numbers on a small machine are noisy. CPU placement: ${report.machine.cpuPlacement ?? "shared"}. ` +
            "The generator's own CPU use is recorded with every scenario in the JSON: where it is near its cores' capacity, the generator, not the proxy, set the rate. " +
            'Throughput "× direct" is the median over rounds that alternate with direct connections to the same backends (lowest and highest round in brackets), not a comparison with the direct row, which ran minutes apart. ' +
            '"Sessions per proxy CPU-s" is the new-session rate the proxy would reach if its CPU were the limit (full handshakes, from its own CPU accounting).',
        "",
        "| Configuration | Sockets held | Drops in hold | Proxy KiB/socket | Sessions/s (full) | Sessions/s (resumed) | × tutorial | Sessions per proxy CPU-s | × tutorial | p99 echo µs (sockets) | p99 × direct | Msg/s | × direct | Proxy CPU µs/msg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ...rows.map(
            (r) =>
                `| ${r.name} | ${fmt(r.maxSockets)} | ${fmt(r.drops)} | ${fmt(r.kibPerSocket, 1)} | ${fmt(r.sessionsFull)} | ${fmt(r.sessionsResumed)} | ${fmt(r.sessionsVsTutorial, 2)} | ${fmt(r.sessionsPerProxyCpuSecond)} | ${fmt(r.capacityVsTutorial, 2)} | ${fmt(r.p99us)} (${fmt(r.p99Sockets)}) | ${fmt(r.p99VsDirect, 2)} | ${fmt(r.messagesPerSecond)} | ${fmt(r.throughputVsDirect, 2)}${r.throughputVsDirectRange ? ` (${fmt(r.throughputVsDirectRange.min, 2)}–${fmt(r.throughputVsDirectRange.max, 2)})` : ""} | ${fmt(r.cpuUsPerMessage, 1)} |`,
        ),
        "",
        "## Latency detail (echo round trip, µs)",
        "",
        "| Configuration | Sockets | Size | p50 | p99 | p99.9 |",
        "|---|---|---|---|---|---|",
        ...report.results.flatMap((r) =>
            r.latency.map((l) => `| ${r.name} | ${fmt(l.sockets)} | ${l.size} B | ${fmt(l.p50us)} | ${fmt(l.p99us)} | ${fmt(l.p999us)} |`),
        ),
        "",
        "## Sockets held, step by step",
        "",
        "| Configuration | Sockets | Failed to open | Proxy memory MiB | KiB/socket |",
        "|---|---|---|---|---|",
        ...report.results.flatMap((r) =>
            r.holding.map(
                (h) =>
                    `| ${r.name} | ${fmt(h.sockets)} | ${fmt(h.failed)} | ${fmt(h.proxyMemoryKiB / 1024, 1)} | ${fmt(h.kibPerSocket, 1)} |`,
            ),
        ),
        "",
        ...(report.scale ? ["## Scale step: this project's edge alone", "", scaleTable(report.scale), ""] : []),
        ...(report.tunnelBuffers
            ? [
                  "## Tunnel buffers (`tunnelBufferKiB`, NGINX's proxy_buffer_size)",
                  "",
                  "This project's edge with each size in turn: memory per held socket (fresh workers), and the proxy's CPU per echoed message, paired with direct rounds as above.",
                  "",
                  tunnelBufferTable(report.tunnelBuffers),
                  "",
              ]
            : []),
        ...(report.storms
            ? [
                  "## Reconnect storms",
                  "",
                  "Every client of what died reconnects at once; times are from the cause to each client's next hello. The direct row is the floor this machine's generator and backends set with no proxy at all.",
                  "",
                  stormRunMarkdown(report.storms),
                  "",
              ]
            : []),
        "## Notes",
        "",
        ...report.results.map((r) => `- **${r.name}**: ${r.description}.${r.notes.length ? ` ${r.notes.join(" ")}` : ""}`),
        "",
        `![chart](${report.plan === "quick" ? "quick.svg" : "latest.svg"})`,
        "",
    ];
    return lines.join("\n");
}

/** Four small bar charts: ratios to direct, new sessions per proxy CPU-second, and memory per socket. */
export function svgChart(report: BenchResults): string {
    const rows = summarize(report);
    const panels: { title: string; values: (number | undefined)[]; digits: number }[] = [
        { title: "Throughput × direct (higher is better)", values: rows.map((r) => r.throughputVsDirect), digits: 2 },
        { title: "p99 latency × direct (lower is better)", values: rows.map((r) => r.p99VsDirect), digits: 2 },
        { title: "New sessions per proxy CPU-second (higher is better)", values: rows.map((r) => r.sessionsPerProxyCpuSecond), digits: 0 },
        { title: "Proxy memory per held socket, KiB", values: rows.map((r) => r.kibPerSocket), digits: 1 },
    ];
    const width = 460;
    const rowHeight = 22;
    const panelHeight = 40 + rows.length * rowHeight;
    const colors = ["#8c8c8c", "#2b6cb0", "#c05621", "#2f855a", "#6b46c1"];
    const parts: string[] = [];
    panels.forEach((panel, p) => {
        const x0 = (p % 2) * (width + 20);
        const y0 = Math.floor(p / 2) * (panelHeight + 20);
        const max = Math.max(...panel.values.filter((v): v is number => v !== undefined && Number.isFinite(v)), 1e-9);
        parts.push(`<text x="${x0}" y="${y0 + 16}" font-weight="bold">${panel.title}</text>`);
        rows.forEach((r, i) => {
            const y = y0 + 30 + i * rowHeight;
            const v = panel.values[i];
            const w = v === undefined || !Number.isFinite(v) ? 0 : Math.max(1, (v / max) * (width - 190));
            parts.push(`<text x="${x0}" y="${y + 14}">${r.name}</text>`);
            parts.push(`<rect x="${x0 + 90}" y="${y}" width="${w.toFixed(1)}" height="16" fill="${colors[i % colors.length]}"/>`);
            parts.push(
                `<text x="${x0 + 96 + w}" y="${y + 13}">${v === undefined || !Number.isFinite(v) ? "n/a" : fmt(v, panel.digits)}</text>`,
            );
        });
    });
    const totalWidth = 2 * width + 20;
    const totalHeight = 2 * (panelHeight + 20);
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${totalWidth}" height="${totalHeight}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
${parts.join("\n")}
</svg>
`;
}

export function writeReport(report: BenchResults, dir: string, stem: string): string[] {
    mkdirSync(dir, { recursive: true });
    const files = [join(dir, `${stem}.json`), join(dir, `${stem}.md`), join(dir, `${stem}.svg`)];
    writeFileSync(files[0], `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(files[1], markdown(report));
    writeFileSync(files[2], svgChart(report));
    return files;
}
