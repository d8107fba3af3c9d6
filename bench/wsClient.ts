/**
 * The bench's WebSocket client primitives: a lean raw session (handshake, upgrade, hello) and a
 * held socket, used by the load generators and by the instruction counts alike.
 */
import { randomBytes } from "node:crypto";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import WebSocket from "ws";

export interface TlsTarget {
    /** wss:// URLs; socket i uses urls[i % urls.length] (several for direct-to-backend runs). */
    readonly urls: readonly string[];
    readonly ca: string;
    readonly cert?: string;
    readonly key?: string;
    readonly servername: string;
    /** More request headers for each upgrade (e.g. a browser's Origin and Cookie). */
    readonly headers?: Readonly<Record<string, string>>;
}

/**
 * One new session as lean as a client can make it — TLS handshake, upgrade request, 101 and the
 * backend's hello, then close — so the generator's own cost does not hide the proxy's. Returns
 * the TLS session the server issued, for resumption, and whether this one was resumed.
 */
export function rawSession(
    target: TlsTarget,
    index: number,
    localAddress: string,
    session: Buffer | undefined,
): Promise<{ session: Buffer | undefined; resumed: boolean }> {
    const url = new URL(target.urls[index % target.urls.length]);
    return new Promise((resolve, reject) => {
        let issued: Buffer | undefined;
        let received = Buffer.alloc(0);
        const timer = setTimeout(() => finish(new Error("session timed out")), 15000);
        const tcp = netConnect({ host: url.hostname, port: Number(url.port), localAddress });
        const socket = tlsConnect(
            {
                socket: tcp,
                servername: target.servername,
                ca: target.ca,
                cert: target.cert,
                key: target.key,
                session,
                ALPNProtocols: ["http/1.1"],
            },
            () =>
                socket.write(
                    `GET / HTTP/1.1\r\nHost: ${target.servername}\r\n${extraHeaders(target)}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
                ),
        );
        const finish = (error?: Error) => {
            clearTimeout(timer);
            const resumed = socket.isSessionReused();
            socket.destroy();
            if (error) reject(error);
            else resolve({ session: issued ?? session, resumed });
        };
        socket.on("session", (s: Buffer) => (issued = s));
        socket.on("error", (e) => finish(e));
        socket.on("close", () => finish(new Error("closed before the hello")));
        socket.on("data", (chunk: Buffer) => {
            received = Buffer.concat([received, chunk]);
            const end = received.indexOf("\r\n\r\n");
            if (end < 0) return;
            if (!received.subarray(0, 13).toString().startsWith("HTTP/1.1 101"))
                return finish(new Error(`HTTP ${received.subarray(9, 12)}`));
            const frame = received.subarray(end + 4);
            if (frame.length < 2) return;
            const short = frame[1] & 0x7f;
            const length = short === 126 ? (frame.length >= 4 ? frame.readUInt16BE(2) + 4 : Infinity) : short + 2;
            if (frame.length >= length) finish();
        });
    });
}

function extraHeaders(target: TlsTarget): string {
    return Object.entries(target.headers ?? {})
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("");
}

export function dial(
    target: TlsTarget,
    index: number,
    localAddress: string,
    timeoutMs = 15000,
): Promise<{ socket: WebSocket; backend: string }> {
    return new Promise((resolve, reject) => {
        const socket = new WebSocket(target.urls[index % target.urls.length], {
            ca: target.ca,
            cert: target.cert,
            key: target.key,
            servername: target.servername,
            headers: { host: target.servername, ...target.headers },
            localAddress,
            handshakeTimeout: timeoutMs,
            perMessageDeflate: false,
        } as WebSocket.ClientOptions);
        const fail = (error: Error) => {
            socket.terminate();
            reject(error);
        };
        socket.once("unexpected-response", (_req, res) => fail(new Error(`HTTP ${res.statusCode}`)));
        socket.once("error", fail);
        socket.once("close", () => fail(new Error("closed before hello")));
        socket.once("message", (data) => {
            socket.removeAllListeners("close");
            socket.removeAllListeners("error");
            socket.on("error", () => undefined);
            try {
                resolve({ socket, backend: (JSON.parse(data.toString()) as { backend: string }).backend });
            } catch (error) {
                fail(error as Error);
            }
        });
    });
}
