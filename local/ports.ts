/** Ports for the local stack, the tests and the benchmark. */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { isAlive, sleep } from "./processes";

/**
 * Ports handed out and not yet bound, machine-wide: each is free when chosen but bound only later
 * (by NGINX, a backend, an exporter), so two stacks starting at once, in one process or in two
 * (two test files, two clones' test runs, a bench beside a test), could be given the same one.
 * NGINX listens with `reuseport`, so the second bind would even succeed, and the two edges would
 * share their clients. A reservation is a file named after the port, holding the pid that took
 * it; it lapses when that process is gone.
 */
const reservations = join("/tmp", `wss-edge-ports-${process.getuid?.() ?? "user"}`);
const reservedHere = new Set<number>();

/** Takes `port` for this process, unless a live process holds it. */
function reserve(port: number): boolean {
    mkdirSync(reservations, { recursive: true, mode: 0o700 });
    const path = join(reservations, String(port));
    for (let attempt = 0; attempt < 2; attempt++) {
        try {
            writeFileSync(path, String(process.pid), { flag: "wx", mode: 0o600 });
            if (reservedHere.size === 0) process.once("exit", releaseReservations);
            reservedHere.add(port);
            return true;
        } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
            // Empty: its taker has created it and not yet written its pid.
            const holder = Number(readFileSync(path, "utf8"));
            if (!(holder > 0) || holder === process.pid || isAlive(holder)) return false;
            rmSync(path, { force: true }); // its process is gone; the port is bound by now, or free
        }
    }
    return false;
}

function releaseReservations(): void {
    for (const port of reservedHere) rmSync(join(reservations, String(port)), { force: true });
    reservedHere.clear();
}

/**
 * A port free for listening on `host`, chosen below the kernel's ephemeral range: a port picked
 * inside it can be taken as the source port of an outgoing connection before we bind it. Never
 * handed out twice while the process that took it lives.
 */
export async function freePort(host: string): Promise<number> {
    const [ephemeralLow] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    const low = 10000;
    const high = ephemeralLow - 1;
    for (let attempt = 0; attempt < 100 && high > low; attempt++) {
        const port = low + Math.floor(Math.random() * (high - low));
        if (reserve(port) && (await canListen(host, port))) return port;
    }
    throw new Error(`no free port between ${low} and ${high} on ${host}`);
}

export function canListen(host: string, port: number): Promise<boolean> {
    return new Promise((done) => {
        const server = createServer();
        server.once("error", () => done(false));
        server.listen(port, host, () => server.close(() => done(true)));
    });
}

/** Whether something accepts connections on `host:port` now. */
export function isListening(host: string, port: number): Promise<boolean> {
    return new Promise((done) => {
        const socket = connect({ host, port }, () => {
            socket.destroy();
            done(true);
        });
        socket.on("error", () => done(false));
    });
}

/** Waits until something accepts on `host:port`. */
export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await isListening(host, port))) {
        if (Date.now() > deadline) throw new Error(`nothing listened on ${host}:${port} within ${timeoutMs / 1000} s`);
        await sleep(100);
    }
}
