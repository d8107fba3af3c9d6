/** Ports for the local stack, the tests and the benchmark. */
import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { sleep } from "./processes";

/**
 * Ports this process has handed out. Each is free when chosen but bound only later (by NGINX, a
 * backend, an exporter), so without this two stacks starting at once could be given the same one.
 */
const handedOut = new Set<number>();

/**
 * A port free for listening on `host`, chosen below the kernel's ephemeral range: a port picked
 * inside it can be taken as the source port of an outgoing connection before we bind it. Never
 * the same port twice in one process.
 */
export async function freePort(host: string): Promise<number> {
    const [ephemeralLow] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    const low = 10000;
    const high = ephemeralLow - 1;
    for (let attempt = 0; attempt < 100 && high > low; attempt++) {
        const port = low + Math.floor(Math.random() * (high - low));
        if (handedOut.has(port)) continue;
        if (await canListen(host, port)) {
            handedOut.add(port);
            return port;
        }
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
