import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import WebSocket from "ws";

/** The first message every backend sends. */
export interface BackendHello {
    readonly type: "hello";
    readonly backend: string;
    readonly headers: Record<string, string>;
    /** Common name of the client certificate the backend saw (the proxy's). */
    readonly peer: string | null;
    /** The TLS connection the backend saw: its protocol, and whether it resumed a session. */
    readonly tls?: { readonly protocol: string; readonly resumed: boolean };
}

export interface EdgeConnectOptions {
    /** PEM of a CA to trust instead of the system's (the stack's caCertificatePem). */
    readonly ca?: string | Buffer;
    /** Source address to connect from, e.g. 127.20.3.1 to look like another client network. */
    readonly localAddress?: string;
    /** Connect to this address instead of resolving the URL's host (which still names the edge in SNI and Host), like curl's --resolve. */
    readonly address?: string;
    readonly cert?: string | Buffer;
    readonly key?: string | Buffer;
    readonly headers?: Record<string, string>;
    readonly timeoutMs?: number;
    /** Largest message this client accepts. */
    readonly maxPayload?: number;
}

export interface EdgeSession {
    readonly socket: WebSocket;
    readonly hello: BackendHello;
    /** The 101 response's status and headers. */
    readonly upgrade: IncomingMessage;
}

/** Opens a WSS session and waits for the backend's hello. */
export function connect(url: string, options: EdgeConnectOptions = {}): Promise<EdgeSession> {
    const timeoutMs = options.timeoutMs ?? 10000;
    return new Promise((resolve, reject) => {
        const socket = new WebSocket(url, {
            ca: options.ca,
            cert: options.cert,
            key: options.key,
            localAddress: options.localAddress,
            ...(options.address ? { lookup: fixedLookup(options.address) } : {}),
            headers: options.headers,
            handshakeTimeout: timeoutMs,
            maxPayload: options.maxPayload ?? 64 * 1024 * 1024,
        });
        let upgrade: IncomingMessage | undefined;
        const timer = setTimeout(() => fail(new Error(`no hello from ${url} within ${timeoutMs} ms`)), timeoutMs);
        const fail = (error: Error) => {
            clearTimeout(timer);
            socket.terminate();
            reject(error);
        };
        socket.once("upgrade", (response) => (upgrade = response));
        socket.once("unexpected-response", (_request, response) =>
            fail(new Error(`${url} answered ${response.statusCode} instead of 101 Switching Protocols`)),
        );
        socket.once("error", fail);
        socket.once("close", (code) => fail(new Error(`${url} closed (code ${code}) before the hello`)));
        socket.once("message", (data) => {
            clearTimeout(timer);
            socket.removeAllListeners("close");
            socket.removeAllListeners("error");
            socket.on("error", () => undefined);
            try {
                const hello = JSON.parse(data.toString()) as BackendHello;
                if (hello.type !== "hello") throw new Error(`first message is ${JSON.stringify(hello).slice(0, 80)}, not a hello`);
                if (!upgrade) throw new Error(`${url} sent a message without a 101 upgrade`);
                resolve({ socket, hello, upgrade });
            } catch (error) {
                fail(error as Error);
            }
        });
    });
}

/** Sends `payload` and resolves with the next message, which the backend echoes back. */
export function echo(socket: WebSocket, payload: string | Buffer, timeoutMs = 10000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
        socket.once("message", (data: Buffer) => {
            clearTimeout(timer);
            resolve(data);
        });
        socket.send(payload, { binary: Buffer.isBuffer(payload) });
    });
}

/** Closes cleanly and waits for the close handshake (or gives up after a second). */
export function close(socket: WebSocket): Promise<void> {
    if (socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
        const timer = setTimeout(() => {
            socket.terminate();
            resolve();
        }, 1000);
        socket.once("close", () => {
            clearTimeout(timer);
            resolve();
        });
        socket.close(1000);
    });
}

/** A DNS lookup that answers every name with `address`. */
function fixedLookup(address: string) {
    const family = isIP(address);
    return (_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
        options?.all ? callback(null, [{ address, family }]) : callback(null, address, family);
}
