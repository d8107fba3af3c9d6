import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { close, connect, echo } from "../../smoke/edgeClient";
import { closeCodeOf, completeResponse, exchange, frame, statusOf, type Target, upgraded, upgradeRequest } from "../support/rawClient";

/**
 * Hostile input against the edge, each case with the outcome a user can rely on. The table in
 * docs/hostile-input.md is generated from this list (`npm run docs:hostile`).
 */
export interface HostileCase {
    readonly name: string;
    readonly layer: "TLS" | "HTTP" | "WebSocket";
    /** What the client does. */
    readonly attempt: string;
    /** What happens, and who decides it. */
    readonly outcome: string;
    readonly run: (target: Target) => Promise<void>;
    /** The affinity mode the edge runs for this case (default: client-address). */
    readonly affinity?: "cookie" | "query:room";
}

/** The per-address limit the corpus stack runs with. */
export const corpusConnectionsPerAddress = 20;

const expectStatus = async (target: Target, request: string, status: number, options = {}) => {
    const result = await exchange(target, request, { until: completeResponse, ...options });
    assert.equal(statusOf(result.response), status, `expected HTTP ${status}, got ${JSON.stringify(result.response.slice(0, 120))}`);
    assert.doesNotMatch(result.response, /^HTTP\/1\.1 101/);
    return result;
};

const expectRefusedHandshake = async (target: Target, options: Parameters<typeof exchange>[2]) => {
    const result = await exchange(target, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", options);
    assert.equal(result.handshake, false, "the TLS handshake must not complete");
    assert.equal(result.response, "", "nothing is served");
    return result;
};

/** Upgrades properly, then sends `frames`; the backend must close with `code`. */
const expectCloseCode = async (target: Target, frames: Buffer, code: number) => {
    const result = await exchange(target, Buffer.concat([Buffer.from(upgradeRequest(), "latin1"), frames]), {
        waitMs: 3000,
        until: (bytes) => closeCodeOf(bytes) !== undefined,
    });
    assert.equal(statusOf(result.response), 101, "the upgrade itself succeeds");
    assert.equal(closeCodeOf(result.bytes), code, `expected close code ${code}`);
};

const h = (lines: string[]) => `${lines.join("\r\n")}\r\n\r\n`;

const issuedCookie = /\r\nSet-Cookie: wss_affinity=[0-9a-f]{32}; Path=\/; Max-Age=\d+; Secure; HttpOnly; SameSite=Lax\r\n/i;

/** Upgrades with a browser's Origin and `cookie`; expects a 101, and a fresh cookie when `reissued`. */
const expectCookieUpgrade = async (target: Target, cookie: string, reissued: boolean) => {
    const result = await exchange(target, upgradeRequest({ Origin: `https://localhost:${target.port}`, Cookie: cookie }), {
        until: upgraded,
    });
    assert.equal(statusOf(result.response), 101, `expected 101, got ${JSON.stringify(result.response.slice(0, 120))}`);
    if (reissued) assert.match(result.response, issuedCookie, "a fresh cookie replaces it");
    else assert.doesNotMatch(result.response, /Set-Cookie/i);
};

/** Upgrades to `path` (query mode); expects a 101 and no header of the client's making. */
const expectQueryUpgrade = async (target: Target, path: string) => {
    const result = await exchange(target, upgradeRequest({}, `GET ${path} HTTP/1.1`), { until: upgraded });
    assert.equal(statusOf(result.response), 101, `expected 101, got ${JSON.stringify(result.response.slice(0, 120))}`);
    assert.doesNotMatch(result.response, /^(X-Injected|Set-Cookie):/im);
};

export const hostileCorpus: HostileCase[] = [
    // --- TLS ------------------------------------------------------------------------------------
    {
        name: "TLS 1.0 ClientHello",
        layer: "TLS",
        attempt: "handshake offering TLS 1.0 only",
        outcome: "handshake refused by NGINX (protocol version); nothing served",
        run: (t) =>
            expectRefusedHandshake(t, { tls: { minVersion: "TLSv1", maxVersion: "TLSv1", ciphers: "DEFAULT@SECLEVEL=0" } }).then(
                () => undefined,
            ),
    },
    {
        name: "TLS 1.1 ClientHello",
        layer: "TLS",
        attempt: "handshake offering TLS 1.1 only",
        outcome: "handshake refused by NGINX (protocol version); nothing served",
        run: (t) =>
            expectRefusedHandshake(t, { tls: { minVersion: "TLSv1.1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" } }).then(
                () => undefined,
            ),
    },
    {
        name: "only CBC ciphers",
        layer: "TLS",
        attempt: "TLS 1.2 handshake offering only CBC suites (ECDHE-ECDSA-AES128-SHA, AES128-SHA)",
        outcome: "handshake refused: no shared cipher",
        run: (t) =>
            expectRefusedHandshake(t, { tls: { maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-SHA:AES128-SHA" } }).then(
                () => undefined,
            ),
    },
    {
        name: "only suites without forward secrecy",
        layer: "TLS",
        attempt: "TLS 1.2 handshake offering only static-RSA AES-GCM suites",
        outcome: "handshake refused: no shared cipher",
        run: (t) =>
            expectRefusedHandshake(t, { tls: { maxVersion: "TLSv1.2", ciphers: "AES128-GCM-SHA256:AES256-GCM-SHA384" } }).then(
                () => undefined,
            ),
    },
    {
        name: "wrong SNI",
        layer: "TLS",
        attempt: "handshake naming a host this edge does not serve",
        outcome: "handshake refused (ssl_reject_handshake) before any certificate is shown",
        run: (t) =>
            expectRefusedHandshake(t, { servername: "evil.example", tls: { checkServerIdentity: () => undefined } }).then(() => undefined),
    },
    {
        name: "no SNI",
        layer: "TLS",
        attempt: "handshake without server name indication",
        outcome: "handshake refused (ssl_reject_handshake)",
        run: (t) => expectRefusedHandshake(t, { servername: null, tls: { checkServerIdentity: () => undefined } }).then(() => undefined),
    },
    {
        name: "ALPN h2 only",
        layer: "TLS",
        attempt: "handshake offering only HTTP/2 through ALPN",
        outcome: "handshake refused (no_application_protocol): the edge speaks HTTP/1.1 only",
        run: (t) => expectRefusedHandshake(t, { tls: { ALPNProtocols: ["h2"] } }).then(() => undefined),
    },
    {
        name: "plain HTTP to the TLS port",
        layer: "TLS",
        attempt: "an unencrypted HTTP request to 443",
        outcome: "400 from NGINX (plain HTTP sent to HTTPS port), connection closed",
        run: (t) => expectStatus(t, upgradeRequest(), 400, { plain: true }).then(() => undefined),
    },
    // --- HTTP -----------------------------------------------------------------------------------
    {
        name: "upgrade without Sec-WebSocket-Key",
        layer: "HTTP",
        attempt: "WebSocket upgrade missing Sec-WebSocket-Key",
        outcome: "400 from the backend; no upgrade",
        run: (t) => expectStatus(t, upgradeRequest({ "Sec-WebSocket-Key": null }), 400).then(() => undefined),
    },
    {
        name: "malformed Sec-WebSocket-Key",
        layer: "HTTP",
        attempt: "Sec-WebSocket-Key that is not 16 base64-encoded bytes",
        outcome: "400 from the backend; no upgrade",
        run: (t) => expectStatus(t, upgradeRequest({ "Sec-WebSocket-Key": "not-a-key" }), 400).then(() => undefined),
    },
    {
        name: "wrong Sec-WebSocket-Version",
        layer: "HTTP",
        attempt: "Sec-WebSocket-Version: 99",
        outcome: "400 from the backend; no upgrade",
        run: (t) => expectStatus(t, upgradeRequest({ "Sec-WebSocket-Version": "99" }), 400).then(() => undefined),
    },
    {
        name: "Upgrade to another protocol",
        layer: "HTTP",
        attempt: "Upgrade: irc/6.9",
        outcome: "400 from the backend; no upgrade",
        run: (t) => expectStatus(t, upgradeRequest({ Upgrade: "irc/6.9" }), 400).then(() => undefined),
    },
    {
        name: "h2c upgrade",
        layer: "HTTP",
        attempt: "Upgrade: h2c with HTTP2-Settings (cleartext HTTP/2 smuggling attempt)",
        outcome: "400 from the backend; never an HTTP/2 tunnel",
        run: (t) =>
            expectStatus(
                t,
                upgradeRequest({ Upgrade: "h2c", Connection: "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA" }),
                400,
            ).then(() => undefined),
    },
    {
        name: "HTTP/2 connection preface",
        layer: "HTTP",
        attempt: "the HTTP/2 preface (PRI * HTTP/2.0) over an HTTP/1.1 connection",
        outcome: "400 from NGINX",
        run: (t) => expectStatus(t, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400).then(() => undefined),
    },
    {
        name: "upgrade with POST",
        layer: "HTTP",
        attempt: "a WebSocket upgrade with the POST method",
        outcome: "405 from the backend; no upgrade",
        run: (t) => expectStatus(t, upgradeRequest({}, "POST / HTTP/1.1"), 405).then(() => undefined),
    },
    {
        name: "missing Host",
        layer: "HTTP",
        attempt: "an HTTP/1.1 request without Host",
        outcome: "400 from NGINX",
        run: (t) => expectStatus(t, upgradeRequest({ Host: null }), 400).then(() => undefined),
    },
    {
        name: "foreign Host",
        layer: "HTTP",
        attempt: "Host: evil.example on a connection made for the edge's name",
        outcome: "421 Misdirected Request from NGINX; nothing proxied",
        run: (t) => expectStatus(t, upgradeRequest({ Host: "evil.example" }), 421).then(() => undefined),
    },
    {
        name: "absolute URI for another host",
        layer: "HTTP",
        attempt: "GET https://evil.example/ with Host: localhost",
        outcome: "421 from NGINX: the URI's host wins and is not this edge's",
        run: (t) => expectStatus(t, upgradeRequest({}, "GET https://evil.example/ HTTP/1.1"), 421).then(() => undefined),
    },
    {
        name: "header larger than the buffers",
        layer: "HTTP",
        attempt: "one 9 KiB header (large_client_header_buffers is 4 × 8k)",
        outcome: "400 from NGINX (Request Header Or Cookie Too Large)",
        run: (t) => expectStatus(t, upgradeRequest({ "X-Padding": "a".repeat(9 * 1024) }), 400).then(() => undefined),
    },
    {
        name: "headers larger than all buffers",
        layer: "HTTP",
        attempt: "six 7 KiB headers (42 KiB in all)",
        outcome: "400 from NGINX",
        run: (t) =>
            expectStatus(
                t,
                upgradeRequest(Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`X-Padding-${i}`, "a".repeat(7 * 1024)]))),
                400,
            ).then(() => undefined),
    },
    {
        name: "request line too long",
        layer: "HTTP",
        attempt: "a 9 KiB request URI",
        outcome: "414 from NGINX",
        run: (t) => expectStatus(t, upgradeRequest({}, `GET /${"a".repeat(9 * 1024)} HTTP/1.1`), 414).then(() => undefined),
    },
    {
        name: "Content-Length with Transfer-Encoding",
        layer: "HTTP",
        attempt: "request smuggling shape: both Content-Length and Transfer-Encoding: chunked",
        outcome: "400 from NGINX; nothing reaches a backend",
        run: (t) =>
            expectStatus(
                t,
                h([
                    "POST / HTTP/1.1",
                    "Host: localhost",
                    "Content-Length: 4",
                    "Transfer-Encoding: chunked",
                    "",
                    "0",
                    "",
                    "GET /smuggled HTTP/1.1",
                    "Host: localhost",
                ]),
                400,
            ).then(() => undefined),
    },
    {
        name: "duplicate Content-Length",
        layer: "HTTP",
        attempt: "request smuggling shape: two Content-Length headers",
        outcome: "400 from NGINX (duplicate header line)",
        run: (t) =>
            expectStatus(t, h(["POST / HTTP/1.1", "Host: localhost", "Content-Length: 4", "Content-Length: 40", "", "abcd"]), 400).then(
                () => undefined,
            ),
    },
    {
        name: "unknown Transfer-Encoding",
        layer: "HTTP",
        attempt: "Transfer-Encoding: gzip, chunked",
        outcome: "501 from NGINX",
        run: (t) =>
            expectStatus(t, h(["POST / HTTP/1.1", "Host: localhost", "Transfer-Encoding: gzip, chunked", "", "0", ""]), 501).then(
                () => undefined,
            ),
    },
    {
        name: "NUL byte in a header",
        layer: "HTTP",
        attempt: "a header value carrying a NUL byte",
        outcome: "400 from NGINX",
        run: (t) => expectStatus(t, upgradeRequest({ "X-Evil": "a\u0000b" }), 400).then(() => undefined),
    },
    {
        name: "path above the root",
        layer: "HTTP",
        attempt: "GET /../../etc/passwd",
        outcome: "400 from NGINX",
        run: (t) => expectStatus(t, upgradeRequest({}, "GET /../../etc/passwd HTTP/1.1"), 400).then(() => undefined),
    },
    {
        name: "binary garbage",
        layer: "HTTP",
        attempt: "random bytes instead of a request",
        outcome: "400 from NGINX, connection closed",
        run: (t) => expectStatus(t, `\u0001\u0002${randomBytes(64).toString("latin1")}\r\n\r\n`, 400).then(() => undefined),
    },
    {
        name: "slowloris",
        layer: "HTTP",
        attempt: "headers sent one byte every 400 ms, never finished",
        outcome: "NGINX closes the connection at client_header_timeout (10 s); other clients are served meanwhile",
        run: async (t) => {
            const result = await exchange(t, upgradeRequest(), { trickle: { bytes: 1, everyMs: 400 }, waitMs: 14000 });
            assert.ok(result.closedAfterMs !== undefined, "the server closed the slow connection");
            assert.ok(result.closedAfterMs >= 9000 && result.closedAfterMs <= 13000, `closed after ${result.closedAfterMs} ms`);
            assert.notEqual(statusOf(result.response), 101);
        },
    },
    {
        name: "connection flood from one address",
        layer: "HTTP",
        attempt: `${corpusConnectionsPerAddress + 1} WebSockets at once from one client address`,
        outcome: `the first ${corpusConnectionsPerAddress} are served; the rest get 503 from NGINX (limit_conn); other addresses are unaffected`,
        run: async () => undefined, // Needs live sessions: run in hostile.e2e.test.ts with the stack.
    },
    // --- WebSocket frames -------------------------------------------------------------------------
    {
        name: "unmasked client frame",
        layer: "WebSocket",
        attempt: "a text frame from the client without a mask",
        outcome: "backend closes with 1002 (protocol error)",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x1, payload: Buffer.from("hi"), masked: false }), 1002),
    },
    {
        name: "invalid UTF-8 text",
        layer: "WebSocket",
        attempt: "a text frame that is not valid UTF-8",
        outcome: "backend closes with 1007 (invalid payload)",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x1, payload: Buffer.from([0xc3, 0x28, 0xff]) }), 1007),
    },
    {
        name: "frame above the maximum payload",
        layer: "WebSocket",
        attempt: "a binary frame announcing 32 MiB (the backend allows 16 MiB)",
        outcome: "backend closes with 1009 (message too big) on the header alone",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x2, announcedLength: 32 * 1024 * 1024 }), 1009),
    },
    {
        name: "reserved bits set",
        layer: "WebSocket",
        attempt: "a frame with RSV1 set and no extension negotiated",
        outcome: "backend closes with 1002",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x1, payload: Buffer.from("hi"), rsv: 0b100 }), 1002),
    },
    {
        name: "unknown opcode",
        layer: "WebSocket",
        attempt: "a frame with the reserved opcode 0x3",
        outcome: "backend closes with 1002",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x3, payload: Buffer.from("hi") }), 1002),
    },
    {
        name: "fragmented control frame",
        layer: "WebSocket",
        attempt: "a ping with FIN unset",
        outcome: "backend closes with 1002",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x9, fin: false, payload: Buffer.from("hi") }), 1002),
    },
    {
        name: "oversized control frame",
        layer: "WebSocket",
        attempt: "a ping carrying 200 bytes (the limit is 125)",
        outcome: "backend closes with 1002",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x9, payload: randomBytes(200) }), 1002),
    },
    {
        name: "continuation without a start",
        layer: "WebSocket",
        attempt: "a continuation frame with no fragmented message to continue",
        outcome: "backend closes with 1002",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x0, payload: Buffer.from("hi") }), 1002),
    },
    {
        name: "invalid close code",
        layer: "WebSocket",
        attempt: "a close frame with code 999",
        outcome: "backend closes with 1002",
        run: (t) => expectCloseCode(t, frame({ opcode: 0x8, payload: Buffer.from([0x03, 0xe7]) }), 1002),
    },
    // --- Affinity -------------------------------------------------------------------------------
    {
        name: "forged affinity cookie",
        layer: "HTTP",
        affinity: "cookie",
        attempt: "affinity: cookie; a browser upgrade with wss_affinity=../../etc/passwd",
        outcome: "101, routed as a new browser's first socket; a fresh cookie replaces the forged one",
        run: (t) => expectCookieUpgrade(t, "wss_affinity=../../etc/passwd", true),
    },
    {
        name: "oversized affinity cookie",
        layer: "HTTP",
        affinity: "cookie",
        attempt: "affinity: cookie; a 7 KiB cookie value of hex digits and a letter",
        outcome: "101 with a fresh cookie (not hex: counts as none); 9 KiB and more: 400 from NGINX, like any header",
        run: async (t) => {
            await expectCookieUpgrade(t, `wss_affinity=${"a".repeat(7 * 1024)}g`, true);
            await expectStatus(
                t,
                upgradeRequest({ Origin: `https://localhost:${t.port}`, Cookie: `wss_affinity=${"a".repeat(9 * 1024)}` }),
                400,
            );
        },
    },
    {
        name: "many affinity cookies",
        layer: "HTTP",
        affinity: "cookie",
        attempt: "affinity: cookie; 120 wss_affinity cookies in one header (about 5.6 KiB), the first malformed",
        outcome:
            "101: only the first counts, and being malformed it is replaced by a fresh cookie (past 8 KiB of header: 400, like any header)",
        run: (t) =>
            expectCookieUpgrade(
                t,
                ["wss_affinity=zz", ...Array.from({ length: 119 }, (_, i) => `wss_affinity=${i.toString(16).padStart(32, "0")}`)].join(
                    "; ",
                ),
                true,
            ),
    },
    {
        name: "a chosen affinity cookie",
        layer: "HTTP",
        affinity: "cookie",
        attempt: `affinity: cookie; ${corpusConnectionsPerAddress + 1} sockets from one address, all with one hex value picked to aim at a backend`,
        outcome: `it gets what one honest key gets: that backend, and no more than ${corpusConnectionsPerAddress} sockets per address (limit_conn: 503)`,
        run: async (t) => {
            const options = {
                ca: t.ca,
                address: t.host,
                localAddress: "127.67.0.1",
                headers: { Origin: `https://localhost:${t.port}`, Cookie: `wss_affinity=${"0".repeat(32)}` },
            };
            const url = `wss://localhost:${t.port}/`;
            const held = await Promise.all(Array.from({ length: corpusConnectionsPerAddress }, () => connect(url, options)));
            try {
                assert.equal(new Set(held.map((s) => s.hello.backend)).size, 1, "one key, one backend");
                await assert.rejects(connect(url, options), /answered 503/);
            } finally {
                await Promise.all(held.map((s) => close(s.socket)));
            }
        },
    },
    {
        name: "forges the affinity key",
        layer: "HTTP",
        attempt: "upgrades with its own X-Affinity-Key: another room's key, which the backends judge rebalancing by",
        outcome:
            "the edge sets the header itself on every upgrade (in client-address mode, to nothing): the backend never sees the forged key, so a client cannot make one judge its socket, or another's, by a key it did not hash by",
        run: async (t) => {
            const session = await connect(`wss://localhost:${t.port}/`, {
                ca: t.ca,
                address: t.host,
                headers: { "X-Affinity-Key": "someone-elses-room" },
            });
            try {
                assert.equal(session.hello.headers["x-affinity-key"], undefined);
            } finally {
                await close(session.socket);
            }
        },
    },
    {
        name: "sends and never reads",
        layer: "WebSocket",
        attempt: "upgrades, then sends 1 MiB messages for 4 s and never reads the echoes",
        outcome:
            "its backend holds at most backendBufferKiB for it and stops reading from it, so TCP pushes back to the sender; the same backend's other clients keep their echoes (held back past half of idleTimeoutSeconds: closed with 1008)",
        run: async (t) => {
            const options = { ca: t.ca, address: t.host };
            const url = `wss://localhost:${t.port}/`;
            const flooder = await connect(url, { ...options, localAddress: "127.68.0.1" });
            let other = await connect(url, { ...options, localAddress: "127.68.1.1" });
            for (let n = 2; n < 40 && other.hello.backend !== flooder.hello.backend; n++) {
                await close(other.socket);
                other = await connect(url, { ...options, localAddress: `127.68.${n}.1` });
            }
            try {
                assert.equal(other.hello.backend, flooder.hello.backend, "a neighbour on the same backend");
                flooder.socket.pause();
                const frame = Buffer.alloc(1024 * 1024, 0x61);
                for (let round = 0; round < 40; round++) {
                    flooder.socket.send(frame);
                    const started = Date.now();
                    await echo(other.socket, `neighbour ${round}`, 2000);
                    assert.ok(Date.now() - started < 1000, "the neighbour's echo came back within a second");
                    await new Promise((resolve) => setTimeout(resolve, 100));
                }
            } finally {
                flooder.socket.terminate();
                await close(other.socket);
            }
        },
    },
    {
        name: "oversized or encoded room",
        layer: "HTTP",
        affinity: "query:room",
        attempt: "affinity: query:room; a 4 KiB room, and one of %00%0D%0AX-Injected:%201",
        outcome: "101: hashed like any room; the encoded bytes stay encoded, no header is injected",
        run: async (t) => {
            await expectQueryUpgrade(t, `/?room=${"r".repeat(4096)}`);
            await expectQueryUpgrade(t, "/?room=%00%0D%0AX-Injected:%201");
        },
    },
    {
        name: "many rooms in one query",
        layer: "HTTP",
        affinity: "query:room",
        attempt: "affinity: query:room; ?room= repeated 300 times with different rooms",
        outcome: "101: the first counts",
        run: (t) => expectQueryUpgrade(t, `/?${Array.from({ length: 300 }, (_, i) => `room=r${i}`).join("&")}`),
    },
];
