// The backend WebSocket app behind the edge: WSS with mutual TLS (only clients holding a
// certificate from the edge's CA get in, i.e. the proxy), a hello naming the backend and the
// headers and TLS connection it saw, echo, and pings that keep NGINX's idle timer from closing
// live sockets. SIGHUP reloads the certificate and keys without closing any socket.
//
// Configuration (environment):
//   BACKEND_NAME            name sent in the hello (default: the host name)
//   HOST, PORT              where to listen (default 0.0.0.0:8443; PORT=0 picks a free port)
//   TLS_DIR                 holds server.crt, server.key and client-ca.crt (default /etc/wss-backend/tls)
//   PING_INTERVAL_SECONDS   ping every client this often; 0 turns pings off (default 30)
//   MAX_PAYLOAD_BYTES       largest message accepted; larger ones close the socket with 1009 (default 16 MiB)
//   MAX_BUFFERED_BYTES      most held for one client that does not read: past it the backend stops
//                           reading from that client until it catches up (default 256 KiB)
//   STUCK_SECONDS           a client held back this long is closed with 1008 (default 150)
//   MAX_SOCKETS             most WebSockets held at once; an upgrade past it gets 503, which the edge
//                           takes as "try the next backend" (default 0: no cap)
//   FLEET_FILE              the edge's upstream as it is now (JSON: affinity, servers, self), read at
//                           start and on SIGHUP; when it changes, the sockets whose key now hashes
//                           to another backend are moved there (default /etc/wss-backend/fleet.json)
//   REBALANCE_SECONDS       the window over which they are closed with 1012, one by one (default 60)
//   CLOSE_SPREAD_SECONDS    on SIGTERM (a deploy, a replacement, a scale-in), the open sockets are
//                           closed one by one over this window, not all at once (default 10; 0: at once)
//   TLS_SESSION_SECONDS     how long a TLS session may be resumed, and how often the key that encrypts
//                           session tickets is replaced (default 300)
//   METRICS_HOST, METRICS_PORT  where Prometheus metrics are served over plain HTTP, apart from the
//                           WebSocket port (default 127.0.0.1:9464; METRICS_PORT=0 turns them off)
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:https";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { WebSocketServer } from "ws";
import { binaryAddress, consistentHashIndex, ipHashIndex } from "./upstreamHash.mjs";

const config = {
    name: process.env.BACKEND_NAME || hostname(),
    host: process.env.HOST || "0.0.0.0",
    port: integerFromEnv("PORT", 8443, 0, 65535),
    tlsDir: process.env.TLS_DIR || "/etc/wss-backend/tls",
    pingIntervalSeconds: integerFromEnv("PING_INTERVAL_SECONDS", 30, 0, 3600),
    maxPayloadBytes: integerFromEnv("MAX_PAYLOAD_BYTES", 16 * 1024 * 1024, 1, 1024 * 1024 * 1024),
    maxBufferedBytes: integerFromEnv("MAX_BUFFERED_BYTES", 256 * 1024, 16 * 1024, 64 * 1024 * 1024),
    stuckSeconds: integerFromEnv("STUCK_SECONDS", 150, 1, 86400),
    closeSpreadSeconds: integerFromEnv("CLOSE_SPREAD_SECONDS", 10, 0, 300),
    maxSockets: integerFromEnv("MAX_SOCKETS", 0, 0, 10000000),
    fleetFile: process.env.FLEET_FILE || "/etc/wss-backend/fleet.json",
    rebalanceSeconds: integerFromEnv("REBALANCE_SECONDS", 60, 1, 86400),
    tlsSessionSeconds: integerFromEnv("TLS_SESSION_SECONDS", 300, 1, 86400),
    metricsHost: process.env.METRICS_HOST || "127.0.0.1",
    metricsPort: integerFromEnv("METRICS_PORT", 9464, 0, 65535),
};

// What an operator asks of a backend: how many sockets it holds, how many it took and how (TLS
// resumed or not), the messages in and out, and how sockets ended.
const metrics = new Registry();
collectDefaultMetrics({ register: metrics });
const counters = {
    connections: new Counter({
        name: "wss_backend_connections_total",
        help: "WebSockets accepted, by whether the edge resumed its TLS session",
        labelNames: ["tls_resumed"],
        registers: [metrics],
    }),
    received: new Counter({ name: "wss_backend_messages_received_total", help: "Messages received from clients", registers: [metrics] }),
    sent: new Counter({
        name: "wss_backend_messages_sent_total",
        help: "Messages sent to clients (hello and echoes)",
        registers: [metrics],
    }),
    closes: new Counter({
        name: "wss_backend_closes_total",
        help: "WebSockets closed, by close code",
        labelNames: ["code"],
        registers: [metrics],
    }),
    full: new Counter({
        name: "wss_backend_full_refusals_total",
        help: "Upgrades refused with 503 because MAX_SOCKETS were open (the edge tried the next backend)",
        registers: [metrics],
    }),
    rebalanced: new Counter({
        name: "wss_backend_rebalanced_total",
        help: "WebSockets closed with 1012 because the fleet changed and their key now hashes to another backend",
        registers: [metrics],
    }),
    heldBack: new Counter({
        name: "wss_backend_held_back_total",
        help: "Times a client that did not read was held back (its reads paused) at MAX_BUFFERED_BYTES",
        registers: [metrics],
    }),
};

/** Headers the edge sets and the hello reports back, so a client can see what the backend saw. */
const reportedHeaders = [
    "host",
    "upgrade",
    "connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-tls",
    "x-real-ip",
    "x-affinity-key",
];

/**
 * The page at / for a person with a browser: it opens a socket to this origin and shows, live, the
 * backend it reached, the TLS of both legs, the round trip, and what a reconnect does. Its inline
 * script and style are allowed by their hashes, and nothing else.
 */
const page = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "page.html"));
const inlineHash = (tag) => {
    const body = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(page.toString())[1];
    return `'sha256-${createHash("sha256").update(body).digest("base64")}'`;
};
const pageHeaders = {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": `default-src 'none'; script-src ${inlineHash("script")}; style-src ${inlineHash("style")}; connect-src 'self'`,
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
};

/** The TLS context from the files as they are now; built again on SIGHUP, when a deploy has renewed them. */
function tlsContext() {
    return {
        cert: readFileSync(join(config.tlsDir, "server.crt")),
        key: readFileSync(join(config.tlsDir, "server.key")),
        ca: readFileSync(join(config.tlsDir, "client-ca.crt")),
        minVersion: "TLSv1.2",
        sessionTimeout: config.tlsSessionSeconds,
    };
}

const server = createServer({ ...tlsContext(), requestCert: true, rejectUnauthorized: true });

// A renewed certificate: new connections get it, open sockets keep theirs. A file that doesn't
// load (half-written, wrong key) leaves the current context serving and says why. A new fleet
// file: the sockets it no longer hashes here move (see rebalance).
process.on("SIGHUP", () => {
    followFleet();
    try {
        server.setSecureContext(tlsContext());
        server.setTicketKeys(randomBytes(48));
        console.log(JSON.stringify({ event: "tls-reloaded", backend: config.name }));
    } catch (error) {
        console.error(JSON.stringify({ event: "tls-reload-failed", backend: config.name, error: String(error) }));
    }
});

// The edge resumes its TLS 1.2 sessions with us; those connections' keys derive from the session's
// secret, which the ticket carries encrypted under this key. Replacing the key as often as sessions
// expire means a stolen key (or session) opens at most the last few minutes of connections.
const ticketKeyRotation = setInterval(() => server.setTicketKeys(randomBytes(48)), config.tlsSessionSeconds * 1000);
ticketKeyRotation.unref();

const sockets = new WebSocketServer({ noServer: true, maxPayload: config.maxPayloadBytes });

// Full: refused before the 101, so the edge (proxy_next_upstream http_503) tries the next backend
// and the client never sees it. Counted here, it holds across every proxy and every NGINX reload;
// NGINX counts the refusal as a failed attempt, so after a few it skips this backend for a while
// (fail_timeout) without asking.
server.on("upgrade", (request, socket, head) => {
    if (config.maxSockets > 0 && sockets.clients.size >= config.maxSockets) {
        counters.full.inc();
        socket.end("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    sockets.handleUpgrade(request, socket, head, (ws) => sockets.emit("connection", ws, request));
});
new Gauge({
    name: "wss_backend_held_back_sockets",
    help: "WebSockets held back now: their client does not read, so the backend does not read from them",
    registers: [metrics],
    collect() {
        let held = 0;
        for (const socket of sockets.clients) if (socket.heldBack) held++;
        this.set(held);
    },
});
new Gauge({
    name: "wss_backend_max_sockets",
    help: "Most WebSockets this backend holds at once (MAX_SOCKETS; 0: no cap)",
    registers: [metrics],
    collect() {
        this.set(config.maxSockets);
    },
});
new Gauge({
    name: "wss_backend_open_sockets",
    help: "WebSockets open now",
    registers: [metrics],
    collect() {
        this.set(sockets.clients.size);
    },
});

server.on("request", (request, response) => {
    if (request.method === "GET" && (request.url === "/" || request.url.startsWith("/?"))) {
        response.writeHead(200, pageHeaders);
        response.end(page);
    } else if (request.url === "/healthz") {
        response.writeHead(200, { "content-type": "application/json" });
        response.end(`${JSON.stringify({ status: "ok", backend: config.name, sockets: sockets.clients.size })}\n`);
    } else {
        response.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" });
        response.end("this endpoint speaks WebSocket\n");
    }
});

// Pings go out one slot of sockets per second (see below); each socket gets a slot in turn.
const pingSlots = Math.min(Math.max(config.pingIntervalSeconds, 1), 30);
let connectionsSeen = 0;
sockets.on("connection", (socket, request) => {
    socket.isAlive = true;
    // What the edge hashed to choose this backend: its key, or else the client's address.
    socket.clientAddress = request.headers["x-real-ip"] || request.socket.remoteAddress;
    const key = request.headers["x-affinity-key"];
    if (key) socket.affinityKey = Buffer.from(key, "latin1");
    socket.pingSlot = connectionsSeen++ % pingSlots;
    socket.on("pong", () => (socket.isAlive = true));
    socket.on("message", (data, isBinary) => {
        counters.received.inc();
        counters.sent.inc();
        socket.send(data, { binary: isBinary }, () => catchUp(socket));
        if (socket.bufferedAmount > config.maxBufferedBytes) holdBack(socket);
    });
    socket.on("close", (code) => {
        clearTimeout(socket.stuckTimer);
        counters.closes.inc({ code: String(code) });
    });
    socket.on("error", () => socket.terminate());
    const headers = Object.fromEntries(reportedHeaders.filter((h) => h in request.headers).map((h) => [h, request.headers[h]]));
    const tls = { protocol: request.socket.getProtocol(), resumed: request.socket.isSessionReused() };
    counters.connections.inc({ tls_resumed: String(tls.resumed) });
    counters.sent.inc();
    socket.send(
        JSON.stringify({
            type: "hello",
            backend: config.name,
            headers,
            peer: request.socket.getPeerCertificate().subject?.CN ?? null,
            tls,
        }),
    );
});

/**
 * Rebalancing: the edge hashes each key over the fleet (ip_hash, or a consistent hash of the
 * affinity key), so when backends join or leave, some keys hash elsewhere, but their open
 * sockets stay where they are, for hours with WebSockets. The placement writes the fleet file
 * once every proxy routes by the new fleet, then sends SIGHUP; the sockets whose key now hashes to
 * another backend are closed with 1012 ("service restart": reconnect now) in a random order
 * spread over REBALANCE_SECONDS, and each reconnects to its new backend, which keeps it. A
 * socket is moved once per change; a newer fleet replaces the moves not yet made.
 *
 * Fleet file: { "affinity": "client-address" | "hash", "servers": ["10.0.1.21:8443", …], "self": "10.0.1.21:8443" },
 * the servers as the edge's upstream names them, in its order.
 */
let fleet = readFleet(undefined);
let pendingMoves = [];

function readFleet(current) {
    let text;
    try {
        text = readFileSync(config.fleetFile, "utf8");
    } catch (error) {
        if (error.code !== "ENOENT")
            console.error(JSON.stringify({ event: "fleet-unreadable", backend: config.name, error: String(error) }));
        return current;
    }
    try {
        const next = JSON.parse(text);
        const valid =
            (next.affinity === "client-address" || next.affinity === "hash") &&
            Array.isArray(next.servers) &&
            next.servers.length > 0 &&
            next.servers.every((s) => typeof s === "string") &&
            typeof next.self === "string";
        if (!valid) throw new Error("wants { affinity: client-address|hash, servers: [host:port…], self: host:port }");
        return next;
    } catch (error) {
        console.error(JSON.stringify({ event: "fleet-invalid", backend: config.name, file: config.fleetFile, error: String(error) }));
        return current;
    }
}

/** The index of the server the edge hashes this socket's key to, in `of`'s order. */
function homeOf(socket, of) {
    if (of.affinity === "client-address") return ipHashIndex(socket.clientAddress, of.servers.length);
    return consistentHashIndex(socket.affinityKey ?? binaryAddress(socket.clientAddress), of.servers);
}

function followFleet() {
    const next = readFleet(fleet);
    const changed = JSON.stringify(next) !== JSON.stringify(fleet);
    fleet = next;
    if (changed && next) rebalance(next);
}

function rebalance(of) {
    for (const timer of pendingMoves) clearTimeout(timer);
    pendingMoves = [];
    const self = of.servers.indexOf(of.self);
    // A backend leaving the fleet moves nothing: its stop closes every socket, spread.
    if (self < 0 || stopping) return;
    const away = [...sockets.clients].filter((socket) => socket.readyState === socket.OPEN && homeOf(socket, of) !== self);
    console.log(
        JSON.stringify({
            event: "rebalancing",
            backend: config.name,
            moving: away.length,
            of: sockets.clients.size,
            seconds: config.rebalanceSeconds,
        }),
    );
    pendingMoves = closeOverWindow(away, config.rebalanceSeconds, (socket) => {
        counters.rebalanced.inc();
        socket.close(1012, "rebalancing: reconnect to reach your key's backend");
    });
}

/**
 * Closes `open` in a random order, evenly over `seconds` (0: all now), each with `close` if it is
 * still open by then; returns the timers of the closes still to come.
 */
function closeOverWindow(open, seconds, close) {
    const order = [...open];
    for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
    }
    const closeOne = (socket) => {
        if (socket.readyState === socket.OPEN) close(socket);
    };
    if (seconds === 0) {
        order.forEach(closeOne);
        return [];
    }
    const stepMs = (seconds * 1000) / order.length;
    return order.map((socket, i) => {
        const timer = setTimeout(() => closeOne(socket), i * stepMs);
        timer.unref();
        return timer;
    });
}

/**
 * Backpressure: a client that sends but does not read would make the echo pile up here without
 * bound. Past MAX_BUFFERED_BYTES the backend stops reading from it, so its TCP window closes and
 * the pressure goes back through NGINX to the sender, who can only send as fast as it reads; the
 * other clients are not slowed. One still held back after STUCK_SECONDS is closed with 1008
 * (policy violation), which it sees once it reads what is queued before it; it is cut 30 s later
 * if it never does.
 */
const stuckGraceSeconds = 30;
function holdBack(socket) {
    if (socket.heldBack) return;
    socket.heldBack = true;
    counters.heldBack.inc();
    socket.pause();
    socket.stuckTimer = setTimeout(() => {
        socket.close(1008, "not reading: the backend's send buffer stayed full");
        setTimeout(() => socket.terminate(), stuckGraceSeconds * 1000).unref();
    }, config.stuckSeconds * 1000);
    socket.stuckTimer.unref();
}

/** Each flushed send: a held-back client that has read half of what was held is read again. */
function catchUp(socket) {
    if (!socket.heldBack || socket.bufferedAmount > config.maxBufferedBytes / 2) return;
    socket.heldBack = false;
    clearTimeout(socket.stuckTimer);
    socket.resume();
}

if (config.pingIntervalSeconds > 0) {
    // Every socket is pinged once per interval, but not all at once: every second, one slot's
    // sockets are. With tens of thousands of sockets, one burst per interval would hold the event
    // loop (and every new handshake) for as long as it takes.
    let tick = 0;
    const timer = setInterval(
        () => {
            const slot = tick++ % pingSlots;
            for (const socket of sockets.clients) {
                // A held-back socket cannot read its pong; its own timer bounds it (holdBack).
                if (socket.pingSlot !== slot || socket.heldBack) continue;
                // No pong since the last ping: the peer is gone without a FIN; free the socket.
                if (!socket.isAlive) {
                    socket.terminate();
                    continue;
                }
                socket.isAlive = false;
                socket.ping();
            }
        },
        (config.pingIntervalSeconds * 1000) / pingSlots,
    );
    timer.unref();
}

// Metrics on a port of their own, plain HTTP: never on the WebSocket port the edge proxies to.
const metricsServer = createHttpServer(async (request, response) => {
    if (request.url !== "/metrics") {
        response.writeHead(404).end();
        return;
    }
    response.writeHead(200, { "content-type": metrics.contentType });
    response.end(await metrics.metrics());
});
if (config.metricsPort > 0) {
    metricsServer.listen(config.metricsPort, config.metricsHost, () => {
        console.log(
            JSON.stringify({
                event: "metrics-listening",
                backend: config.name,
                host: config.metricsHost,
                port: metricsServer.address().port,
            }),
        );
    });
}

server.listen(config.port, config.host, () => {
    const { port } = server.address();
    console.log(JSON.stringify({ event: "listening", backend: config.name, host: config.host, port }));
});

/**
 * A stop. SIGTERM (a supervisor's: docker stop, systemd, the local stack replacing a backend): no
 * new sockets (the edge sends new clients to the other backends at once), and the open ones are
 * closed in a random order spread evenly over CLOSE_SPREAD_SECONDS, so that their reconnects
 * reach the other backends as a trickle instead of one burst. SIGINT (Ctrl-C, or a whole stack
 * going down, when no other backend is left to spread onto): all at once.
 *
 * Each close is 1001 "going away" with a reconnect hint in its reason, `retry-after-ms=<n>`, a
 * random 0 to 1,000 ms: a client that honours it spreads even the sockets closed in one tick.
 */
const retryHintMs = 1000;
let stopping = false;
function stop(spreadSeconds) {
    if (stopping) return;
    stopping = true;
    server.close();
    metricsServer.close();
    for (const timer of pendingMoves) clearTimeout(timer);
    console.log(JSON.stringify({ event: "stopping", backend: config.name, sockets: sockets.clients.size, spreadSeconds }));
    closeOverWindow(sockets.clients, spreadSeconds, (socket) =>
        socket.close(1001, `backend stopping; retry-after-ms=${Math.floor(Math.random() * retryHintMs)}`),
    );
    // A client that never answers its close is cut by ws after 30 s; the process does not wait that long.
    const deadline = setTimeout(() => process.exit(0), spreadSeconds * 1000 + 5000);
    deadline.unref();
    const poll = setInterval(() => {
        if (sockets.clients.size === 0) process.exit(0);
    }, 50);
    poll.unref();
}
process.on("SIGTERM", () => stop(config.closeSpreadSeconds));
process.on("SIGINT", () => stop(0));

function integerFromEnv(name, fallback, min, max) {
    const raw = process.env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
        console.error(`backend: ${name}=${JSON.stringify(raw)} must be a whole number from ${min} to ${max}`);
        process.exit(2);
    }
    return value;
}
