/**
 * npm run bench:instructions [-- --quick] [-- --only wss-edge,haproxy,caddy,tutorial] [-- --keep DIR]
 *
 * What the proxy executes, counted by callgrind rather than timed: the same count for the same
 * binary, config and traffic whatever else the machine is doing, so a change of a few percent
 * shows. Each configuration runs under `valgrind --tool=callgrind` as one process, one after
 * another in one run, against the same three backends; each measure zeroes the counters after a
 * warm-up, runs its traffic, and dumps them:
 *   - a new session: TCP, a full TLS handshake, the upgrade, the backend leg and its hello;
 *   - a resumed session: the same with the ticket the previous one was given;
 *   - an echoed message of 64 B and of 16 KiB, there and back, on held sockets;
 *   - an idle socket-minute: held sockets the backends ping (full runs only: it takes a minute).
 * Results: bench/results/instructions.{json,md}; with --only, the other configurations' figures
 * are kept from the file. --platform debian-13 counts this project's config on that proxy
 * platform's NGINX and OpenSSL (the proxyPlatform setting; local/platformNginx.ts) and keeps the
 * rest; every full run records the default platform's too, so the two compare. --set KEY=VALUE
 * counts this project's config with an edge setting changed (a trial: printed, not written).
 * --keep DIR keeps callgrind's dumps for callgrind_annotate.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type WebSocket from "ws";
import { settingAssignments } from "../local/cli";
import { LocalStack, repositoryRoot } from "../local/localStack";
import { nginxProgram, opensslOf } from "../local/platformNginx";
import { hardFileLimit, sleep } from "../local/processes";
import { postQuantumGroup } from "../nginx/tlsPolicy";
import { type RawSettings, validateEdgeSettings } from "../settings/edgeSettings";
import { type ProxyPlatform, settingsTable } from "../settings/settingsTable";
import { benchMain } from "./benchMain";
import { nginxVersionLine } from "./nginxHeap";
import { type BenchContext, caddy, haproxy, type ProxyUnderTest, tutorial, wssEdgeUnderTool } from "./proxies";
import { benchLogger } from "./stats";
import { dial, rawSession, type TlsTarget } from "./wsClient";

export const configNames = ["wss-edge", "haproxy", "caddy", "tutorial"] as const;
export type ConfigName = (typeof configNames)[number];

export interface InstructionPlan {
    /** Sessions before each count starts: the backend legs' TLS sessions, pools and caches warm. */
    readonly warmup: number;
    readonly sessions: number;
    /** Echoes of each size, spread over `sockets` held sockets. */
    readonly messages: number;
    readonly sockets: number;
    readonly idle?: { readonly sockets: number; readonly seconds: number };
}

export const fullInstructionPlan: InstructionPlan = {
    warmup: 20,
    sessions: 200,
    messages: 1000,
    sockets: 10,
    idle: { sockets: 100, seconds: 60 },
};
export const quickInstructionPlan: InstructionPlan = { warmup: 10, sessions: 40, messages: 200, sockets: 4 };

export interface InstructionCounts {
    readonly name: ConfigName;
    readonly description: string;
    readonly instructionsPerSession: number;
    readonly instructionsPerResumedSession: number;
    /** Of the resumed sessions, how many the proxy did resume (1 = all). */
    readonly resumedFraction: number;
    readonly instructionsPerMessage64: number;
    readonly instructionsPerMessage16k: number;
    readonly instructionsPerIdleSocketMinute: number | null;
    /** Per new session from a client that offers X25519MLKEM768 first, where the platform's OpenSSL has it. */
    readonly instructionsPerHybridSession?: number;
}

/** This project's config on one proxy platform. */
export interface PlatformCounts extends InstructionCounts {
    readonly platform: ProxyPlatform;
    /** NGINX's version and the OpenSSL it runs with. */
    readonly nginx: string;
}

export interface InstructionResults {
    readonly measuredAt: string;
    readonly plan: InstructionPlan;
    readonly versions: Record<string, string>;
    readonly configs: InstructionCounts[];
    readonly platforms?: PlatformCounts[];
}

export const resultsFile = join(repositoryRoot, "bench", "results", "instructions.json");
const callgrindTool = (dumps: string) => ["valgrind", "--tool=callgrind", `--callgrind-out-file=${dumps}/callgrind.%p`];

/** callgrind's counters of one running process, zeroed and read through callgrind_control. */
class Counter {
    constructor(
        private readonly pid: number,
        private readonly dumps: string,
    ) {}

    zero(): void {
        execFileSync("callgrind_control", ["--zero", String(this.pid)], { stdio: "ignore", timeout: 30000 });
    }

    /** Instructions since the last zero; the dump stays in the dumps folder under `label`. */
    read(label: string): number {
        execFileSync("callgrind_control", [`--dump=${label}`, String(this.pid)], { stdio: "ignore", timeout: 30000 });
        const prefix = `callgrind.${this.pid}.`;
        const latest = readdirSync(this.dumps)
            .filter((f) => f.startsWith(prefix))
            .sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)))
            .at(-1);
        const summary = latest && /^summary:\s+(\d+)/m.exec(readFileSync(join(this.dumps, latest), "utf8"));
        if (!summary) throw new Error(`callgrind wrote no dump for pid ${this.pid} (${label})`);
        return Number(summary[1]);
    }
}

/**
 * Warm-up: the first sessions through a proxy under callgrind are the slowest (every code path is
 * translated on its first run), slow enough for a backend leg to time out; a few may fail.
 */
async function warmUp(target: TlsTarget, count: number): Promise<void> {
    let failures = 0;
    for (let done = 0; done < count; ) {
        try {
            await rawSession(target, 0, "127.0.0.1", undefined);
            done++;
        } catch (error) {
            if (++failures > 5) throw new Error(`warm-up: ${failures} sessions failed, the last with ${(error as Error).message}`);
            await sleep(1000);
        }
    }
}

async function sessions(target: TlsTarget, count: number, resume: boolean): Promise<number> {
    let session = resume ? (await rawSession(target, 0, "127.0.0.1", undefined)).session : undefined;
    let resumed = 0;
    for (let i = 0; i < count; i++) {
        const result = await rawSession(target, 0, "127.0.0.1", session);
        if (result.resumed) resumed++;
        if (resume) session = result.session;
    }
    return resumed;
}

/**
 * New sessions from a client that offers the post-quantum hybrid group first, as current browsers
 * do: Debian 13's `openssl s_client`, one process per session, sending the upgrade and waiting for
 * the backend's hello. Returns how many negotiated the group.
 */
async function hybridSessions(target: TlsTarget, count: number, openssl: string): Promise<number> {
    const url = new URL(target.urls[0]);
    const caFile = join(tmpdir(), `wss-edge-ca-${process.pid}.pem`);
    writeFileSync(caFile, target.ca);
    let negotiated = 0;
    try {
        for (let i = 0; i < count; i++) {
            const output = await new Promise<string>((resolve, reject) => {
                const client = spawn(
                    openssl,
                    [
                        "s_client",
                        "-connect",
                        `${url.hostname}:${url.port}`,
                        "-servername",
                        target.servername,
                        "-CAfile",
                        caFile,
                        "-verify_return_error",
                        "-groups",
                        `${postQuantumGroup}:X25519`,
                        "-ign_eof",
                    ],
                    { stdio: ["pipe", "pipe", "pipe"] },
                );
                let text = "";
                const timer = setTimeout(() => client.kill("SIGKILL"), 30000);
                client.stdout.on("data", (chunk: Buffer) => {
                    text += chunk.toString("latin1");
                    // The hello is a JSON text frame after the 101's headers.
                    if (/HTTP\/1\.1 101[\s\S]*\r\n\r\n[\s\S]*"type":"hello"/.test(text)) client.kill("SIGTERM");
                });
                client.stderr.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
                client.on("error", reject);
                client.on("close", () => {
                    clearTimeout(timer);
                    if (/"type":"hello"/.test(text)) resolve(text);
                    else reject(new Error(`no hello through ${openssl} s_client: ${text.slice(-300)}`));
                });
                client.stdin.end(
                    `GET / HTTP/1.1\r\nHost: ${target.servername}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
                );
            });
            if (new RegExp(`Negotiated TLS1.3 group: ${postQuantumGroup}`).test(output)) negotiated++;
        }
    } finally {
        rmSync(caFile, { force: true });
    }
    return negotiated;
}

async function echo(sockets: readonly WebSocket[], messages: number, size: number): Promise<void> {
    const payload = Buffer.alloc(size, 0x61);
    const each = Math.ceil(messages / sockets.length);
    await Promise.all(
        sockets.map(async (socket) => {
            for (let i = 0; i < each; i++) {
                await new Promise<void>((resolve, reject) => {
                    const timer = setTimeout(() => reject(new Error("echo timed out")), 30000);
                    socket.once("message", (data: Buffer) => {
                        clearTimeout(timer);
                        if (data.length === size) resolve();
                        else reject(new Error(`echo of ${size} B came back as ${data.length} B`));
                    });
                    socket.send(payload);
                });
            }
        }),
    );
}

/** Opens `count` sockets one after another; as in the warm-up, a few may fail under callgrind and are dialled again. */
async function hold(target: TlsTarget, count: number): Promise<WebSocket[]> {
    const held: WebSocket[] = [];
    let failures = 0;
    try {
        while (held.length < count) {
            try {
                held.push((await dial(target, 0, "127.0.0.1", 60000)).socket);
            } catch (error) {
                if (++failures > 5) throw new Error(`${failures} sockets failed to open, the last with ${(error as Error).message}`);
                await sleep(1000);
            }
        }
        return held;
    } catch (error) {
        for (const socket of held) socket.terminate();
        throw error;
    }
}

/** Counts one configuration's instructions per session, message and idle minute. */
export async function countProxy(
    proxy: ProxyUnderTest,
    plan: InstructionPlan,
    dumps: string,
    log: (line: string) => void = () => undefined,
    /** Debian 13's openssl command, to count sessions that negotiate the hybrid group too. */
    hybridClient?: string,
): Promise<InstructionCounts> {
    const [pid] = proxy.processes();
    const counter = new Counter(pid, dumps);
    const { target } = proxy;
    await warmUp(target, plan.warmup);
    log(`${proxy.name}: warm; counting new sessions`);
    counter.zero();
    await sessions(target, plan.sessions, false);
    const perSession = counter.read(`${proxy.name}-sessions`) / plan.sessions;
    let perHybrid: number | undefined;
    if (hybridClient) {
        log(`${proxy.name}: counting sessions that negotiate ${postQuantumGroup}`);
        counter.zero();
        const negotiated = await hybridSessions(target, plan.sessions, hybridClient);
        perHybrid = counter.read(`${proxy.name}-hybrid`) / plan.sessions;
        if (negotiated !== plan.sessions) throw new Error(`${negotiated} of ${plan.sessions} sessions negotiated ${postQuantumGroup}`);
    }
    log(`${proxy.name}: counting resumed sessions`);
    counter.zero();
    const resumed = await sessions(target, plan.sessions, true);
    const perResumed = counter.read(`${proxy.name}-resumed`) / plan.sessions;

    log(`${proxy.name}: counting echoes`);
    const held = await hold(target, plan.sockets);
    const perMessage: number[] = [];
    try {
        for (const size of [64, 16384]) {
            await echo(held, held.length * 2, size);
            counter.zero();
            await echo(held, plan.messages, size);
            perMessage.push(counter.read(`${proxy.name}-message${size}`) / (Math.ceil(plan.messages / held.length) * held.length));
        }
    } finally {
        for (const socket of held) socket.terminate();
    }

    let perIdleMinute: number | null = null;
    if (plan.idle) {
        const idle = await hold(target, plan.idle.sockets);
        try {
            counter.zero();
            await sleep(plan.idle.seconds * 1000);
            perIdleMinute = counter.read(`${proxy.name}-idle`) / plan.idle.sockets / (plan.idle.seconds / 60);
        } finally {
            for (const socket of idle) socket.terminate();
        }
    }
    return {
        name: proxy.name as ConfigName,
        description: proxy.description,
        instructionsPerSession: Math.round(perSession),
        instructionsPerResumedSession: Math.round(perResumed),
        resumedFraction: resumed / plan.sessions,
        instructionsPerMessage64: Math.round(perMessage[0]),
        instructionsPerMessage16k: Math.round(perMessage[1]),
        instructionsPerIdleSocketMinute: perIdleMinute === null ? null : Math.round(perIdleMinute),
        ...(perHybrid === undefined ? {} : { instructionsPerHybridSession: Math.round(perHybrid) }),
    };
}

const launchers: Record<ConfigName, (context: BenchContext & { underTool: readonly string[] }) => Promise<ProxyUnderTest>> = {
    "wss-edge": wssEdgeUnderTool,
    haproxy: (context) => haproxy(context, 1),
    caddy,
    tutorial,
};

/**
 * Starts a local stack (one NGINX worker, as every count is one process's) and counts each of
 * `names` in turn. The stack, and every proxy, is stopped before it returns.
 */
export async function measureInstructions(
    names: readonly ConfigName[],
    plan: InstructionPlan,
    dir: string,
    log: (line: string) => void = () => undefined,
    settings: RawSettings = {},
): Promise<InstructionCounts[]> {
    const dumps = join(dir, "callgrind");
    mkdirSync(dumps, { recursive: true });
    const stack = await LocalStack.start({ stateDir: join(dir, "stack"), edgePort: 0, workerProcesses: 1, settings });
    const results: InstructionCounts[] = [];
    try {
        // The edge last: counting it stops the stack's own NGINX.
        for (const name of [...names].sort((a, b) => Number(a === "wss-edge") - Number(b === "wss-edge"))) {
            log(`${name}: starting under callgrind`);
            const proxy = await launchers[name]({ stack, dir, fileLimit: hardFileLimit(), underTool: callgrindTool(dumps) });
            try {
                const hybrid =
                    name === "wss-edge" && stack.proxyPlatform !== "debian-12"
                        ? opensslOf(stack.proxyPlatform, join(dir, "bin"))
                        : undefined;
                const counts = await countProxy(proxy, plan, dumps, log, hybrid);
                log(
                    `${name}: ${counts.instructionsPerSession} per session, ${counts.instructionsPerResumedSession} resumed (${counts.resumedFraction * 100}% were), ${counts.instructionsPerMessage64} per 64 B, ${counts.instructionsPerMessage16k} per 16 KiB`,
                );
                results.push(counts);
            } finally {
                await proxy.stop();
            }
        }
    } finally {
        await stack.stop();
    }
    return configNames.flatMap((name) => results.filter((r) => r.name === name));
}

function versionOf(command: string, args: string[]): string {
    const run = spawnSync(command, args, { encoding: "utf8" });
    return `${run.stdout}${run.stderr}`.split("\n")[0].trim();
}

/** The binaries a count depends on, as each names its own version. */
export function versions(): Record<string, string> {
    return {
        nginx: versionOf("nginx", ["-v"]),
        openssl: versionOf("openssl", ["version"]),
        haproxy: versionOf("haproxy", ["-v"]),
        caddy: versionOf("caddy", ["version"]),
        valgrind: versionOf("valgrind", ["--version"]),
    };
}

const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : "—");
const thousands = (n: number | null) => (n === null ? "—" : n.toLocaleString("en-US"));

export function instructionsMarkdown(results: InstructionResults): string {
    const haproxy = results.configs.find((c) => c.name === "haproxy");
    const rows = results.configs.map(
        (c) =>
            `| ${c.name} | ${thousands(c.instructionsPerSession)} | ${thousands(c.instructionsPerResumedSession)}${c.resumedFraction < 1 ? ` (${Math.round(c.resumedFraction * 100)}% resumed)` : ""} | ${thousands(c.instructionsPerMessage64)} | ${thousands(c.instructionsPerMessage16k)} | ${thousands(c.instructionsPerIdleSocketMinute)} | ${haproxy ? ratio(c.instructionsPerSession, haproxy.instructionsPerSession) : "—"} | ${haproxy ? ratio(c.instructionsPerMessage64, haproxy.instructionsPerMessage64) : "—"} |`,
    );
    const { plan } = results;
    return `# Instructions per operation (callgrind)

Measured ${results.measuredAt} by \`npm run bench:instructions\`: each proxy as one process under
callgrind, ${plan.sessions} new and ${plan.sessions} resumed sessions, ${plan.messages} echoes of each size over
${plan.sockets} held sockets${plan.idle ? `, ${plan.idle.sockets} idle sockets for ${plan.idle.seconds} s` : ""}, after ${plan.warmup} warm-up sessions. A session is the proxy's
whole share: the client's TLS handshake, the upgrade, the backend leg (mutual TLS) and the
backend's hello. A message is one echo, there and back.

| Config | per new session | per resumed session | per 64 B message | per 16 KiB message | per idle socket-minute | session vs HAProxy | 64 B vs HAProxy |
|---|---|---|---|---|---|---|---|
${rows.join("\n")}

${Object.entries(results.versions)
    .map(([name, version]) => `- ${name}: ${version}`)
    .join("\n")}

${results.configs.map((c) => `- **${c.name}**: ${c.description}`).join("\n")}
${platformsMarkdown(results.platforms ?? [])}`;
}

function platformsMarkdown(platforms: readonly PlatformCounts[]): string {
    if (platforms.length === 0) return "";
    const rows = platforms.map(
        (p) =>
            `| ${p.platform} | ${p.nginx} | ${thousands(p.instructionsPerSession)} | ${p.instructionsPerHybridSession === undefined ? "— (no such group)" : thousands(p.instructionsPerHybridSession)} | ${thousands(p.instructionsPerResumedSession)} | ${thousands(p.instructionsPerMessage64)} | ${thousands(p.instructionsPerMessage16k)} | ${thousands(p.instructionsPerIdleSocketMinute)} |`,
    );
    return `
## This project's config on each proxy platform (\`proxyPlatform\`)

\`npm run bench:instructions -- --platform debian-13\` counts it on Debian 13's NGINX and OpenSSL
(unpacked from Debian's archive and run with Debian 13's own loader and libraries). A hybrid
session is a new session from a client that offers X25519MLKEM768 first, as current browsers do
(Debian 13's \`openssl s_client\`); the other sessions negotiate X25519.

| Platform | NGINX and OpenSSL | per new session (X25519) | per new session (X25519MLKEM768) | per resumed session | per 64 B message | per 16 KiB message | per idle socket-minute |
|---|---|---|---|---|---|---|---|
${rows.join("\n")}
`;
}

/** The committed results with `measured` in place of the same configurations' (or platform's) old figures. */
export function mergeResults(
    previous: InstructionResults | undefined,
    fresh: Omit<InstructionResults, "configs" | "platforms">,
    measured: { readonly configs: InstructionCounts[]; readonly platform?: PlatformCounts },
): InstructionResults {
    const kept = (previous?.configs ?? []).filter((c) => !measured.configs.some((m) => m.name === c.name));
    const configs = configNames.flatMap((name) => [...measured.configs, ...kept].filter((c) => c.name === name));
    const platforms = [
        ...(previous?.platforms ?? []).filter((p) => p.platform !== measured.platform?.platform),
        ...(measured.platform ? [measured.platform] : []),
    ].sort((a, b) => a.platform.localeCompare(b.platform));
    // A platform's run counts on that platform only: the file's other figures stay as they were measured.
    return measured.configs.length > 0 ? { ...fresh, configs, platforms } : { ...(previous ?? { ...fresh, configs: [] }), platforms };
}

export function readResults(file = resultsFile): InstructionResults | undefined {
    return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as InstructionResults) : undefined;
}

if (require.main === module) {
    const { values } = parseArgs({
        options: {
            quick: { type: "boolean", default: false },
            only: { type: "string" },
            keep: { type: "string" },
            platform: { type: "string" },
            set: { type: "string", multiple: true },
        },
    });
    const usage = (message: string): never => {
        console.error(message);
        process.exit(2);
    };
    let trial: RawSettings = {};
    try {
        trial = settingAssignments(values.set ?? []);
        validateEdgeSettings(trial, "local");
    } catch (error) {
        usage(`--set: ${(error as Error).message}`);
    }
    if ("proxyPlatform" in trial)
        usage("--set: the platform is --platform here (debian-12 or debian-13), so the results say which they are");
    const isTrial = Object.keys(trial).length > 0;
    const platforms = settingsTable.proxyPlatform.choices as readonly ProxyPlatform[];
    const platform = (values.platform ?? settingsTable.proxyPlatform.default) as ProxyPlatform;
    if (!platforms.includes(platform)) {
        console.error(`--platform: unknown platform ${values.platform} (known: ${platforms.join(", ")})`);
        process.exit(2);
    }
    // Another platform than the default counts this project's config alone.
    const onPlatformOnly = platform !== settingsTable.proxyPlatform.default;
    const names = (onPlatformOnly || isTrial ? ["wss-edge"] : (values.only?.split(",") ?? [...configNames])) as ConfigName[];
    const unknown = names.filter((n) => !configNames.includes(n));
    if (unknown.length > 0) {
        console.error(`--only: unknown configuration ${unknown.join(", ")} (known: ${configNames.join(", ")})`);
        process.exit(2);
    }
    const plan = values.quick ? quickInstructionPlan : fullInstructionPlan;
    benchMain("instructions", async (scratch) => {
        const measured = await measureInstructions(names, plan, scratch, benchLogger("instructions"), {
            ...trial,
            proxyPlatform: platform,
        });
        if (isTrial) {
            console.log(JSON.stringify({ settings: trial, ...measured[0] }, null, 2));
            return;
        }
        if (values.keep) cpSync(join(scratch, "callgrind"), values.keep, { recursive: true });
        const edge = measured.find((c) => c.name === "wss-edge");
        const results = mergeResults(
            readResults(),
            { measuredAt: new Date().toISOString(), plan, versions: versions() },
            {
                configs: onPlatformOnly ? [] : measured,
                platform: edge && { ...edge, platform, nginx: nginxVersionLine(nginxProgram(platform)) },
            },
        );
        const dir = values.quick ? join(scratch, "results") : join(repositoryRoot, "bench", "results");
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, "instructions.json"), `${JSON.stringify(results, null, 2)}\n`);
        writeFileSync(join(dir, "instructions.md"), instructionsMarkdown(results));
        console.log(instructionsMarkdown(results));
    });
}
