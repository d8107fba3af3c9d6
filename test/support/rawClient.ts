import { randomBytes } from "node:crypto";
import { type Socket, connect as tcpConnect } from "node:net";
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from "node:tls";

export interface Target {
    readonly host: string;
    readonly port: number;
    readonly ca: string;
}

export interface Exchange {
    /** Whether the TLS handshake completed (always true for plain TCP). */
    readonly handshake: boolean;
    readonly error?: string;
    /** Everything the server sent, as latin1 text. */
    readonly response: string;
    readonly bytes: Buffer;
    /** Milliseconds until the server closed the connection, if it did within the wait. */
    readonly closedAfterMs?: number;
}

export interface ExchangeOptions {
    /** SNI to send; null sends none. Default "localhost". */
    readonly servername?: string | null;
    readonly tls?: ConnectionOptions;
    /** Plain TCP instead of TLS. */
    readonly plain?: boolean;
    /** Write the request in pieces of this many bytes, this far apart (a slow client). */
    readonly trickle?: { readonly bytes: number; readonly everyMs: number };
    /** How long to wait for the server after writing. */
    readonly waitMs?: number;
    /**
     * Stop collecting as soon as this holds for what arrived (the server keeps a kept-alive
     * connection open, and waiting out `waitMs` for it tells nothing more).
     */
    readonly until?: (bytes: Buffer) => boolean;
}

/** Sends raw bytes to the edge and collects what comes back until it closes or the wait ends. */
export function exchange(target: Target, request: Buffer | string, options: ExchangeOptions = {}): Promise<Exchange> {
    const payload = typeof request === "string" ? Buffer.from(request, "latin1") : request;
    const waitMs = options.waitMs ?? 3000;
    return new Promise((resolve) => {
        const started = Date.now();
        const chunks: Buffer[] = [];
        let handshake = options.plain === true;
        let error: string | undefined;
        let timer: NodeJS.Timeout | undefined;
        let trickle: NodeJS.Timeout | undefined;
        const socket: Socket | TLSSocket = options.plain
            ? tcpConnect({ host: target.host, port: target.port }, () => send())
            : tlsConnect(
                  {
                      host: target.host,
                      port: target.port,
                      ca: target.ca,
                      ...(options.servername === null ? {} : { servername: options.servername ?? "localhost" }),
                      ...options.tls,
                  },
                  () => {
                      handshake = true;
                      send();
                  },
              );
        let finished = false;
        const finish = (closed: boolean) => {
            if (finished) return;
            finished = true;
            clearTimeout(timer);
            clearInterval(trickle);
            socket.destroy();
            const bytes = Buffer.concat(chunks);
            resolve({
                handshake,
                error,
                response: bytes.toString("latin1"),
                bytes,
                closedAfterMs: closed ? Date.now() - started : undefined,
            });
        };
        const send = () => {
            if (options.trickle) {
                let offset = 0;
                trickle = setInterval(() => {
                    if (offset >= payload.length || socket.destroyed) return clearInterval(trickle);
                    socket.write(payload.subarray(offset, offset + options.trickle!.bytes));
                    offset += options.trickle!.bytes;
                }, options.trickle.everyMs);
            } else {
                socket.write(payload);
            }
            timer = setTimeout(() => finish(false), waitMs);
        };
        socket.on("data", (d: Buffer) => {
            chunks.push(d);
            if (options.until?.(Buffer.concat(chunks))) finish(false);
        });
        socket.on("error", (e) => (error = e.message));
        socket.on("close", () => finish(true));
    });
}

/** An HTTP/1.1 WebSocket upgrade request for the edge, with headers to add or drop. */
export function upgradeRequest(overrides: Record<string, string | null> = {}, requestLine = "GET / HTTP/1.1"): string {
    const headers: Record<string, string | null> = {
        Host: "localhost",
        Upgrade: "websocket",
        Connection: "Upgrade",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        "Sec-WebSocket-Version": "13",
        ...overrides,
    };
    const lines = Object.entries(headers)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => `${k}: ${v}`);
    return `${requestLine}\r\n${lines.join("\r\n")}\r\n\r\n`;
}

/**
 * Whether `bytes` hold a whole HTTP response that is not a 101: its head, and its body as
 * Content-Length or chunked framing gives it. (A 101's stream goes on; so does a response that
 * says neither, until the server closes.)
 */
export function completeResponse(bytes: Buffer): boolean {
    const headEnd = bytes.indexOf("\r\n\r\n");
    if (headEnd < 0) return false;
    const head = bytes.subarray(0, headEnd).toString("latin1");
    if (statusOf(head) === 101) return false;
    const body = bytes.subarray(headEnd + 4);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (length) return body.length >= Number(length[1]);
    if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) return body.includes("0\r\n\r\n");
    return false;
}

/** Whether `bytes` hold the whole head of a 101 response. */
export function upgraded(bytes: Buffer): boolean {
    return statusOf(bytes.toString("latin1", 0, 16)) === 101 && bytes.includes("\r\n\r\n");
}

/** The status code of the first HTTP response in `response`, if any. */
export function statusOf(response: string): number | undefined {
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(response);
    return match ? Number(match[1]) : undefined;
}

export interface FrameSpec {
    readonly opcode: number;
    readonly payload?: Buffer;
    readonly fin?: boolean;
    readonly rsv?: number;
    readonly masked?: boolean;
    /** Announce this payload length instead of the real one (the payload itself is not sent). */
    readonly announcedLength?: number;
}

/** Encodes one client WebSocket frame, well-formed or not. */
export function frame({ opcode, payload = Buffer.alloc(0), fin = true, rsv = 0, masked = true, announcedLength }: FrameSpec): Buffer {
    const length = announcedLength ?? payload.length;
    const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode) & 0xff];
    const maskBit = masked ? 0x80 : 0;
    let lengthBytes: Buffer;
    if (length < 126) lengthBytes = Buffer.from([maskBit | length]);
    else if (length < 65536) lengthBytes = Buffer.from([maskBit | 126, length >> 8, length & 0xff]);
    else {
        lengthBytes = Buffer.alloc(9);
        lengthBytes[0] = maskBit | 127;
        lengthBytes.writeBigUInt64BE(BigInt(length), 1);
    }
    const body = announcedLength === undefined ? payload : Buffer.alloc(0);
    if (!masked) return Buffer.concat([Buffer.from(head), lengthBytes, body]);
    const mask = randomBytes(4);
    return Buffer.concat([Buffer.from(head), lengthBytes, mask, Buffer.from(body.map((b, i) => b ^ mask[i % 4]))]);
}

/** The close code in the first close frame the server sent after its 101 response, if any. */
export function closeCodeOf(bytes: Buffer): number | undefined {
    const headerEnd = bytes.indexOf("\r\n\r\n");
    if (headerEnd < 0) return undefined;
    let offset = headerEnd + 4;
    while (offset + 2 <= bytes.length) {
        const opcode = bytes[offset] & 0x0f;
        let length = bytes[offset + 1] & 0x7f;
        let start = offset + 2;
        if (length === 126) {
            length = bytes.readUInt16BE(start);
            start += 2;
        } else if (length === 127) {
            length = Number(bytes.readBigUInt64BE(start));
            start += 8;
        }
        if (opcode === 0x8) return length >= 2 ? bytes.readUInt16BE(start) : 1005;
        offset = start + length;
    }
    return undefined;
}
