import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import type WebSocket from "ws";
import type { LocalStack, LocalStackOptions } from "../../local/localStack";
import { httpsGet } from "../../local/probes";
import { close, connect, type EdgeConnectOptions, type EdgeSession } from "../../smoke/edgeClient";
import { DrillStack } from "./drillStack";

/**
 * Starts a local stack on free ports in a fresh state folder, stopped (and its folder
 * removed) when the test file ends, whether its tests passed or not.
 */
export async function startTestEdge(options: Partial<LocalStackOptions> = {}): Promise<DrillStack> {
    const stateDir = mkdtempSync(join(tmpdir(), "wss-edge-e2e-"));
    let stack: DrillStack | undefined;
    after(async () => {
        await stack?.stop();
        rmSync(stateDir, { recursive: true, force: true });
    });
    stack = await DrillStack.start({ stateDir, edgePort: 0, ...options });
    return stack;
}

/** A client address in its own /24 of 127.0.0.0/8, so ip_hash treats it as another network. */
export function clientNetworkAddress(n: number): string {
    return `127.${10 + Math.floor(n / 250)}.${(n % 250) + 1}.1`;
}

/** GET `path` from the stack's edge over HTTPS, by its name, trusting what its clients trust. */
export function getFromEdge(stack: LocalStack, path: string, options: Parameters<typeof httpsGet>[4] = {}) {
    const tls = { ca: stack.clientCaPem, servername: "localhost" };
    return httpsGet(stack.edgeAddress.host, stack.edgeAddress.port, path, tls, options);
}

/** Opens a session through the stack's edge. */
export function connectToEdge(stack: LocalStack, options: EdgeConnectOptions & { readonly path?: string } = {}): Promise<EdgeSession> {
    const url = new URL(options.path ?? "/", stack.outputs.endpoint).toString();
    return connect(url, { ca: stack.clientCaPem, ...options });
}

/**
 * Stops `names` (one after another) with `signal`, runs `body`, and starts again every one still
 * stopped once `body` ends, whether it passed or not: a failing test leaves the stack whole for
 * the tests after it. `body` may restart one itself (to time its return) with `restart`.
 */
export async function whileBackendsStopped<T>(
    stack: LocalStack,
    names: readonly string[],
    signal: NodeJS.Signals,
    body: (restart: (name: string) => Promise<void>) => Promise<T>,
): Promise<T> {
    const stopped = new Set<string>();
    try {
        for (const name of names) {
            await stack.stopBackend(name, signal);
            stopped.add(name);
        }
        return await body(async (name) => {
            stopped.delete(name);
            await stack.restartBackend(name);
        });
    } finally {
        for (const name of stopped) await stack.restartBackend(name);
    }
}

/** Keeps track of sockets a test opens, and closes whatever is left when the file ends. */
export class SocketPool {
    readonly sessions: EdgeSession[] = [];
    readonly closed = new Map<WebSocket, number>();
    /** When each closed socket saw its close (Date.now()), and the reason it was given. */
    readonly closings = new Map<WebSocket, { readonly at: number; readonly reason: string }>();

    constructor() {
        after(() => this.closeAll());
    }

    async open(stack: LocalStack, options: EdgeConnectOptions = {}): Promise<EdgeSession> {
        const session = await connectToEdge(stack, options);
        this.track(session);
        return session;
    }

    track(session: EdgeSession): void {
        this.sessions.push(session);
        session.socket.once("close", (code, reason) => {
            this.closed.set(session.socket, code);
            this.closings.set(session.socket, { at: Date.now(), reason: reason.toString() });
        });
    }

    async closeAll(): Promise<void> {
        await Promise.all(this.sessions.map((s) => close(s.socket)));
    }
}

export { sleep } from "../../local/processes";
