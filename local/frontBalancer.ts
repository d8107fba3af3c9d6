import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isListening } from "./ports";
import { hardFileLimit, terminate, waitUntil } from "./processes";

export interface FrontTarget {
    readonly name: string;
    readonly address: string;
    readonly port: number;
}

/** One port of the front and the proxies it forwards to, as one listener and target group of the NLB. */
export interface FrontListener {
    readonly name: string;
    readonly port: number;
    readonly targets: readonly FrontTarget[];
}

export interface FrontBalancerOptions {
    /** Folder of its config and log. */
    readonly dir: string;
    readonly bindAddress: string;
    /** An IPv6 address to take clients on too (::1), as a dual-stack balancer does. */
    readonly ipv6Address?: string;
    /** The edge's TLS port first, then the plain-HTTP redirect's when it has one. */
    readonly listeners: readonly FrontListener[];
    readonly haproxyBinary: string;
}

/**
 * The local stand-in for the AWS Network Load Balancer, HAProxy from Debian in TCP mode. What it
 * shares with the NLB is what the edge relies on: layer 4 only (TLS ends on the proxies), every
 * connection prefixed with a PROXY protocol v2 header carrying the client's address, active
 * health checks that take a dead proxy out, and a new connection never sent to a proxy that
 * refuses it. Its idle timeout is the NLB's TCP default, 350 s; the backends ping well within it.
 */
export function renderFrontConfig(options: Omit<FrontBalancerOptions, "dir" | "haproxyBinary">): string {
    // Two descriptors per proxied connection, under this machine's per-process limit.
    const maxconn = Math.floor(hardFileLimit() / 2) - 100;
    return [
        "# The local stand-in for the Network Load Balancer; written by local/frontBalancer.ts.",
        "global",
        `    maxconn ${maxconn}`,
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 350s",
        "    timeout server 350s",
        "    # A connection a proxy refuses goes to another one, as the NLB's passive checks do.",
        "    option redispatch",
        "    retries 2",
        ...options.listeners.flatMap((listener) => [
            "",
            `frontend ${listener.name}`,
            `    bind ${options.bindAddress}:${listener.port}`,
            // As a dual-stack balancer on AWS: IPv6 clients too, their address passed on in the PROXY header.
            ...(options.ipv6Address ? [`    bind [${options.ipv6Address}]:${listener.port}`] : []),
            `    maxconn ${maxconn}`,
            `    default_backend ${listener.name}-proxies`,
            "",
            `backend ${listener.name}-proxies`,
            "    balance roundrobin",
            `    source ${options.bindAddress}`,
            ...listener.targets.map(
                (t) => `    server ${t.name} ${t.address}:${t.port} send-proxy-v2 check check-send-proxy inter 1s fall 2 rise 2`,
            ),
        ]),
        "",
    ].join("\n");
}

export class FrontBalancer {
    private constructor(private readonly process: ChildProcess) {}

    static async start(options: FrontBalancerOptions): Promise<FrontBalancer> {
        const config = join(options.dir, "haproxy.cfg");
        await writeFile(config, renderFrontConfig(options));
        const log = openSync(join(options.dir, "haproxy.log"), "a");
        // -db: in the foreground of its own process group, so the stack can stop it by PID.
        const child = spawn(options.haproxyBinary, ["-db", "-f", config], { stdio: ["ignore", log, log], detached: true });
        closeSync(log);
        const front = new FrontBalancer(child);
        try {
            await waitUntil(
                10000,
                () => {
                    if (child.exitCode !== null)
                        throw new Error(`local stack: HAProxy exited (${child.exitCode}); see ${join(options.dir, "haproxy.log")}`);
                    return isListening(options.bindAddress, options.listeners[0].port);
                },
                `local stack: HAProxy did not listen on ${options.bindAddress}:${options.listeners[0].port}`,
            );
        } catch (error) {
            await front.stop();
            throw error;
        }
        return front;
    }

    get pid(): number {
        return this.process.pid ?? 0;
    }

    async stop(): Promise<void> {
        await terminate(this.process, "SIGTERM");
    }
}
