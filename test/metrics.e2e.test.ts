// Metrics on a live local edge: the backends' own (prom-client) and NGINX's through Debian's
// prometheus-nginx-exporter, listed in outputs.json, exact where their source is exact, on loopback only.
import assert from "node:assert/strict";
import { get } from "node:http";
import { connect as tcpConnect } from "node:net";
import { networkInterfaces } from "node:os";
import { describe, it } from "node:test";
import { waitUntil } from "../local/processes";
import { close, echo } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, startTestEdge, whileBackendsStopped } from "./support/localEdge";

const scrape = (url: string) =>
    new Promise<string>((resolve, reject) => {
        get(url, (response) => {
            let body = "";
            response.on("data", (d) => (body += d));
            response.on("end", () => resolve(body));
        }).on("error", reject);
    });
const sample = (text: string, metric: string) =>
    Number(new RegExp(`^${metric.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, "m").exec(text)?.[1]);

/** This machine's first address outside loopback, if it has one. */
const outside = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === "IPv4" && !i.internal)?.address;

describe("metrics", async () => {
    const stack = await startTestEdge({ settings: { backendCount: "2" } });
    const url = (name: string) => stack.outputs.metrics.find((m) => m.name === name)!.url;

    it("lists NGINX's exporter and every backend in outputs.json, all on loopback", () => {
        assert.deepEqual(
            stack.outputs.metrics.map((m) => m.name),
            ["nginx", "backend-1", "backend-2"],
        );
        assert.ok(stack.outputs.metrics.every((m) => /^http:\/\/127\.0\.0\.1:\d+\/metrics$/.test(m.url)));
    });

    it("counts 60 open sockets exactly in the backends' metrics, and NGINX's active connections with them", async () => {
        const sessions = await Promise.all(
            Array.from({ length: 60 }, (_, i) => connectToEdge(stack, { localAddress: clientNetworkAddress(2500 + i) })),
        );
        try {
            await Promise.all(sessions.map((s, i) => echo(s.socket, `m${i}`)));
            const [one, two] = [await scrape(url("backend-1")), await scrape(url("backend-2"))];
            assert.equal(sample(one, "wss_backend_open_sockets") + sample(two, "wss_backend_open_sockets"), 60);
            assert.equal(sample(one, "wss_backend_messages_received_total") + sample(two, "wss_backend_messages_received_total"), 60);
            const accepted = (resumed: string) =>
                sample(one, `wss_backend_connections_total{tls_resumed="${resumed}"}`) +
                sample(two, `wss_backend_connections_total{tls_resumed="${resumed}"}`);
            // Each worker's first connections to a backend are full handshakes; later ones resume.
            assert.equal(accepted("true") + accepted("false"), 60);
            assert.ok(accepted("true") > 0, "some backend connections resumed their TLS session");
            const nginx = await scrape(url("nginx"));
            assert.equal(sample(nginx, "nginx_up"), 1);
            // Every client socket, plus the exporter's own request to stub_status.
            const active = sample(nginx, "nginx_connections_active");
            assert.ok(active >= 61 && active <= 63, `nginx_connections_active ${active}`);
        } finally {
            await Promise.all(sessions.map((s) => close(s.socket)));
        }
        await waitUntil(
            5000,
            async () => sample(await scrape(url("backend-1")), 'wss_backend_closes_total{code="1000"}') > 0,
            "closes counted by code",
        );
    });

    it("shows a killed backend as down while the others report", async () => {
        await whileBackendsStopped(stack, ["backend-2"], "SIGKILL", async () => {
            const snapshot = await stack.metricsSnapshot();
            assert.equal(snapshot.backends["backend-2"], undefined);
            assert.equal(typeof snapshot.backends["backend-1"], "number");
            await assert.rejects(scrape(url("backend-2")), /ECONNREFUSED/);
        });
    });

    it("refuses connections to every metrics port from outside loopback", {
        skip: !outside && "this machine has no address outside loopback",
    }, async () => {
        for (const { name, url: metricsUrl } of stack.outputs.metrics) {
            const port = Number(new URL(metricsUrl).port);
            const outcome = await new Promise<string>((resolve) => {
                const socket = tcpConnect({ host: outside!, port }, () => {
                    socket.destroy();
                    resolve("connected");
                });
                socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
            });
            assert.equal(outcome, "ECONNREFUSED", `${name} on ${outside}:${port}`);
        }
    });
});
