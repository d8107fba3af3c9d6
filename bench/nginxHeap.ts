/**
 * npm run bench:heap [-- --sockets 1000] [-- --set tunnelBufferKiB=1]
 *
 * Where NGINX's memory per held WebSocket goes. Runs this project's config in one NGINX process
 * under valgrind's massif, takes a heap snapshot after warming up and another with `--sockets`
 * idle WSS sockets open, and attributes the difference per socket to what allocated it.
 * Results: bench/results/nginx-heap.md. Slow under valgrind, so not part of `npm run bench`.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { settingAssignments } from "../local/cli";
import { LocalStack } from "../local/localStack";
import { nginxProgram } from "../local/platformNginx";
import { waitForPort } from "../local/ports";
import { sleep, stopNginx, terminate } from "../local/processes";
import { benchMain } from "./benchMain";
import { LoadFleet } from "./loadFleet";
import { wssEdge } from "./proxies";
import { benchLogger } from "./stats";

/** What a reader can act on, matched against an allocation's call stack (first match wins). */
const categories: { readonly name: string; readonly stack: RegExp }[] = [
    {
        name: "NGINX TLS write buffer on the backend leg (16 KiB, fixed in NGINX 1.22: no directive sets it)",
        stack: /ngx_ssl_send_chain.*ngx_chain_writer/,
    },
    { name: "NGINX TLS write buffer on the client leg (`ssl_buffer_size`)", stack: /ngx_ssl_send_chain.*ngx_http_write_filter/ },
    { name: "OpenSSL connection objects, one per TLS leg (`SSL_new`)", stack: /SSL_new|SSL_set_SSL_CTX/ },
    { name: "OpenSSL record ciphers (AES-GCM contexts, two per leg)", stack: /EVP_CipherInit/ },
    { name: "OpenSSL read buffers still held between reads", stack: /SSL_read/ },
    { name: "OpenSSL state kept from the handshakes (session, peer certificate, keys)", stack: /SSL_do_handshake|ngx_ssl_handshake/ },
    { name: "NGINX memory pools (connection, request, upstream)", stack: /ngx_memalign|ngx_create_pool/ },
    {
        name: "NGINX large pool allocations (header and proxy buffers: `client_header_buffer_size`, `proxy_buffer_size`)",
        stack: /ngx_alloc/,
    },
    { name: "other OpenSSL", stack: /libcrypto|libssl/ },
];

interface Snapshot {
    readonly heapBytes: number;
    readonly extraBytes: number;
    /** Bytes per leaf of massif's allocation tree, keyed by the functions on its stack. */
    readonly leaves: ReadonlyMap<string, number>;
}

const log = benchLogger("heap");

async function main(dir: string): Promise<void> {
    const { values } = parseArgs({
        options: { sockets: { type: "string", default: "1000" }, set: { type: "string", multiple: true } },
    });
    // Edge settings to profile with (e.g. --set tunnelBufferKiB=1), as the local stack takes them.
    const settings = settingAssignments(values.set ?? []);
    const sockets = Number(values.sockets);
    if (!Number.isInteger(sockets) || sockets < 100 || sockets > 5000)
        throw new Error(`--sockets must be a whole number from 100 to 5000 (one NGINX process under valgrind), got ${values.sockets}`);
    const stack = await LocalStack.start({ stateDir: join(dir, "stack"), edgePort: 0, workerProcesses: 1, settings });
    const fleet = await LoadFleet.start(1);
    let profiled: ChildProcess | undefined;
    try {
        // The same config in one process (no master), so that massif sees every allocation.
        const master = stack.nginxMasterPid();
        if (master) await stopNginx(master);
        const config = join(stack.stateDir, "edge", "current", "nginx.conf");
        const massifOut = join(dir, "massif.out");
        const nginx = nginxProgram(stack.proxyPlatform);
        profiled = spawn(
            "valgrind",
            [
                "--tool=massif",
                "--vgdb=yes",
                "--threshold=0.1",
                `--massif-out-file=${massifOut}`,
                nginx.path,
                ...nginx.args,
                "-c",
                config,
                "-g",
                "daemon off; master_process off;",
            ],
            { stdio: ["ignore", "ignore", "inherit"] },
        );
        // NGINX under valgrind takes seconds to start.
        await waitForPort("127.0.0.1", stack.edgeAddress.port, 60000);
        const target = wssEdge({ stack, dir, fileLimit: 0 }).target;

        // Warm up first: one-time allocations (caches, lazily built tables) belong to no socket.
        await fleet.send(0, { cmd: "open", target, count: 50, addresses: LoadFleet.addresses(0), concurrency: 8, deadlineMs: 300000 });
        await fleet.send(0, { cmd: "close" });
        await sleep(2000);
        const before = snapshot(profiled.pid!, join(dir, "before"));
        const opened = await fleet.send(0, {
            cmd: "open",
            target,
            count: sockets,
            addresses: LoadFleet.addresses(0),
            concurrency: 8,
            deadlineMs: 600000,
        });
        if ((opened.opened as number) !== sockets)
            throw new Error(`only ${opened.opened} of ${sockets} sockets opened: ${JSON.stringify(opened.errors)}`);
        await sleep(3000);
        const after = snapshot(profiled.pid!, join(dir, "after"));
        await fleet.send(0, { cmd: "close" });

        const suffix = Object.entries(settings)
            .map(([key, value]) => `-${key}-${value}`.replace(/[^A-Za-z0-9_.-]/g, "_"))
            .join("");
        const file = join(__dirname, "results", `nginx-heap${suffix}.md`);
        writeFileSync(file, report(before, after, sockets, nginxVersionLine(nginx), settings));
        log(`results: ${file}`);
    } finally {
        await fleet.stop();
        if (profiled) await terminate(profiled, "SIGQUIT");
        await stack.stop();
    }
}

function snapshot(pid: number, file: string): Snapshot {
    execFileSync("vgdb", [`--pid=${pid}`, "detailed_snapshot", file], { stdio: "ignore" });
    return parseSnapshot(readFileSync(file, "utf8"));
}

/** Reads massif's detailed snapshot: every leaf's bytes, with the functions on its stack. */
export function parseSnapshot(text: string): Snapshot {
    const number = (key: string) => Number(new RegExp(`^${key}=(\\d+)`, "m").exec(text)?.[1] ?? NaN);
    const leaves = new Map<string, number>();
    const path: string[] = [];
    let previousDepth = -1;
    let previousChildren = 0;
    let previousBytes = 0;
    const flushLeaf = () => {
        if (previousDepth >= 0 && previousChildren === 0) {
            const key = path.slice(0, previousDepth + 1).join(" | ");
            leaves.set(key, (leaves.get(key) ?? 0) + previousBytes);
        }
    };
    for (const line of text.split("\n")) {
        const node = /^( *)n(\d+): (\d+) (.*)$/.exec(line);
        if (!node) continue;
        flushLeaf();
        const depth = node[1].length;
        const frame = /^0x[0-9A-F]+: (\S+) \(in (\S+)\)/.exec(node[4]);
        path[depth] = frame ? (frame[1] === "???" ? `(${frame[2].split("/").pop()})` : frame[1]) : node[4];
        previousDepth = depth;
        previousChildren = Number(node[2]);
        previousBytes = Number(node[3]);
    }
    flushLeaf();
    return { heapBytes: number("mem_heap_B"), extraBytes: number("mem_heap_extra_B"), leaves };
}

/** Per held socket: the growth between the snapshots, by category. */
export function attribute(before: Snapshot, after: Snapshot, sockets: number): { name: string; bytesPerSocket: number }[] {
    const byCategory = new Map<string, number>();
    const add = (leaves: ReadonlyMap<string, number>, sign: number) => {
        for (const [stack, bytes] of leaves) {
            const name = categories.find((c) => c.stack.test(stack))?.name ?? "other NGINX";
            byCategory.set(name, (byCategory.get(name) ?? 0) + sign * bytes);
        }
    };
    add(after.leaves, 1);
    add(before.leaves, -1);
    const rows = [...byCategory].map(([name, bytes]) => ({ name, bytesPerSocket: bytes / sockets }));
    rows.push({ name: "glibc malloc's own headers and alignment", bytesPerSocket: (after.extraBytes - before.extraBytes) / sockets });
    return rows.sort((a, b) => b.bytesPerSocket - a.bytesPerSocket);
}

function report(before: Snapshot, after: Snapshot, sockets: number, versions: string, settings: Record<string, string> = {}): string {
    const given = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
    const rows = attribute(before, after, sockets);
    const kib = (bytes: number) => (bytes / 1024).toFixed(1);
    const total = rows.reduce((sum, r) => sum + r.bytesPerSocket, 0);
    return [
        "# Where NGINX's memory per held WebSocket goes",
        "",
        `Heap growth of one NGINX process running this project's config${given.length ? ` with ${given.join(", ")}` : ""} (TLS to the client, mutual TLS to the backend) while it holds ${sockets.toLocaleString("en-US")} idle WSS sockets, ` +
            `measured with valgrind's massif (snapshots after a warm-up and with the sockets open), ${new Date().toISOString().slice(0, 10)}. ${versions} Reproduce with \`npm run bench:heap${given.map((g) => ` -- --set ${g}`).join("")}\`.`,
        "",
        "Massif counts what was asked of malloc; the benchmark's per-socket figure is resident memory (PSS) under glibc, so the two differ by a few KiB.",
        "",
        "| Allocated by | KiB per socket |",
        "|---|---|",
        ...rows.filter((r) => Math.abs(r.bytesPerSocket) >= 51).map((r) => `| ${r.name} | ${kib(r.bytesPerSocket)} |`),
        `| **Total** | **${kib(total)}** |`,
        "",
    ].join("\n");
}

/** What NGINX says of itself and of the OpenSSL it was built with and runs with. */
export function nginxVersionLine(nginx: { readonly path: string; readonly args: readonly string[] }): string {
    const lines = spawnSync(nginx.path, [...nginx.args, "-V"], { encoding: "utf8" }).stderr.split("\n");
    return `${lines[0]}; ${lines[1]}.`.replace(/^nginx version: /, "");
}

if (require.main === module) {
    benchMain("heap", main);
}
