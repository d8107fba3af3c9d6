// The edge's metric sender (deploy/edge-metrics.sh), as every proxy and backend runs it once a
// minute, against real sockets on the local stack, sending with Debian's AWS CLI to a stand-in for
// CloudWatch's PutMetricData on loopback: the open sockets exactly, the ceiling the live config
// admits, each refusal counted under its reason, the health check, and each backend's sockets.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import type WebSocket from "ws";
import { CloudWatchStandIn } from "../local/cloudWatchStandIn";
import { repositoryRoot } from "../local/localStack";
import { isAlive, waitUntil } from "../local/processes";
import { close } from "../smoke/edgeClient";
import { clientNetworkAddress, connectToEdge, startTestEdge } from "./support/localEdge";
import { requiring, unlessInstalled } from "./support/requirements";

const run = promisify(execFile);
const sender = join(repositoryRoot, "deploy", "edge-metrics.sh");
const awsCli = requiring(unlessInstalled({ "/usr/bin/aws": "awscli" }));

/** One run of the sender for `role`, as the VM's timer runs it, sending with `dimensions` to the stand-in; its state under `stateDir`. */
function sendMetrics(
    role: "proxy" | "backend",
    cloudWatch: CloudWatchStandIn,
    stateDir: string,
    dimensions: string,
    extra: Record<string, string> = {},
) {
    return run("bash", [sender, role], {
        env: {
            // As on the VMs: Debian's AWS CLI (a pip or pyenv one earlier on this machine's PATH is not it).
            PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
            HOME: process.env.HOME,
            AWS_ACCESS_KEY_ID: "stand-in",
            AWS_SECRET_ACCESS_KEY: "stand-in",
            AWS_DEFAULT_REGION: "eu-west-1",
            WSS_EDGE_METRICS_NAMESPACE: "WssEdge",
            WSS_EDGE_METRICS_DIMENSIONS: dimensions,
            WSS_EDGE_CLOUDWATCH_ENDPOINT: cloudWatch.endpoint,
            WSS_EDGE_METRICS_STATE: join(stateDir, "metrics", dimensions.replace(/[^A-Za-z0-9]+/g, "-")),
            ...extra,
        },
        timeout: 60_000,
    });
}

describe("the metric sender on the local stack, into a stand-in for CloudWatch", awsCli, async () => {
    if (awsCli.skip !== undefined) return;
    const ceiling = 4;
    const stack = await startTestEdge({ settings: { maxSockets: String(ceiling), connectionsPerAddress: "2" } });
    const cloudWatch = await CloudWatchStandIn.start();
    after(() => cloudWatch.stop());
    const stateDir = (stack as unknown as { stateDir: string }).stateDir;

    const send = (role: "proxy" | "backend", dimensions: string, extra: Record<string, string> = {}) =>
        sendMetrics(role, cloudWatch, stateDir, dimensions, extra);
    const proxy = { Stack: "wss-edge-test", Proxy: "proxy-1" };
    const sendProxy = () => send("proxy", "Stack=wss-edge-test,Proxy=proxy-1", { WSS_EDGE_ROOT: join(stateDir, "edge") });

    const open: WebSocket[] = [];
    after(() => Promise.all(open.map((socket) => close(socket))));
    /** Opens a socket from `address`; resolves with whether the edge took it. */
    const tryOpen = async (address: string) => {
        try {
            open.push((await connectToEdge(stack, { localAddress: address })).socket);
            return true;
        } catch {
            return false;
        }
    };

    it("sends the open sockets exactly, the ceiling, and each refusal under its reason", async () => {
        await sendProxy(); // the counters' starting point
        // Two from one address (its limit), a third from it refused; two more from others reach the ceiling, a fifth refused.
        const outcomes = [
            await tryOpen(clientNetworkAddress(1)),
            await tryOpen(clientNetworkAddress(1)),
            await tryOpen(clientNetworkAddress(1)),
            await tryOpen(clientNetworkAddress(2)),
            await tryOpen(clientNetworkAddress(3)),
            await tryOpen(clientNetworkAddress(4)),
        ];
        assert.deepEqual(outcomes, [true, true, false, true, true, false]);
        await sendProxy();
        assert.equal(cloudWatch.latest("OpenSockets", proxy), ceiling);
        assert.equal(cloudWatch.latest("MaxSockets", proxy), ceiling);
        assert.equal(cloudWatch.latest("RefusedPerAddress", proxy), 1);
        assert.equal(cloudWatch.latest("RefusedAtCeiling", proxy), 1);
        assert.equal(cloudWatch.latest("HealthCheck", proxy), 1);
        assert.equal(cloudWatch.latest("BackendsMarkedDown", proxy), 0);
        const edgeLeaf = new X509Certificate(stack.certificates.edgeCertificateChainPem);
        assert.equal(
            cloudWatch.latest("EdgeCertificateDaysLeft", proxy),
            Math.floor((Date.parse(edgeLeaf.validTo) - Date.now()) / 86_400_000),
        );
        const accepted = cloudWatch.latest("Accepted", proxy) ?? 0;
        assert.ok(accepted >= 6, `the six connections at least, and the sender's own: ${accepted}`);
        assert.equal(cloudWatch.latest("Handled", proxy), accepted);
        assert.ok(cloudWatch.datapoints.every((d) => d.namespace === "WssEdge" && d.timestamp !== ""));
    });

    it("sends no refusal twice: the next run counts only what came after", async () => {
        await sendProxy();
        assert.equal(cloudWatch.latest("RefusedPerAddress", proxy), 0);
        assert.equal(cloudWatch.latest("RefusedAtCeiling", proxy), 0);
    });

    it("sends each backend's open sockets and its cap", async () => {
        const backends = stack.outputs.metrics.filter((m) => m.name.startsWith("backend-"));
        let total = 0;
        for (const backend of backends) {
            await send("backend", `Stack=wss-edge-test,Backend=${backend.name}`, { WSS_EDGE_BACKEND_METRICS: backend.url });
            const sockets = cloudWatch.latest("OpenSockets", { Stack: "wss-edge-test", Backend: backend.name });
            assert.notEqual(sockets, undefined, backend.name);
            total += sockets ?? 0;
            assert.ok(
                (cloudWatch.latest("MaxSockets", { Stack: "wss-edge-test", Backend: backend.name }) ?? 0) > 0,
                "the cap its memory gives",
            );
        }
        assert.equal(total, ceiling, "every socket the edge holds is on one backend");
    });

    it("sends HealthCheck 0, and nothing it cannot read, when NGINX does not answer", async () => {
        const master = stack.nginxMasterPid();
        assert.ok(master);
        process.kill(master, "SIGTERM");
        await waitUntil(10_000, () => stack.nginxMasterPid() === undefined || !isAlive(master), "NGINX did not stop");
        try {
            const before = cloudWatch.datapoints.length;
            const { stderr } = await sendProxy();
            assert.match(stderr, /stub_status .* does not answer; sending HealthCheck 0/);
            assert.deepEqual(
                cloudWatch.datapoints.slice(before).map((d) => [d.metricName, d.value]),
                [["HealthCheck", 0]],
            );
        } finally {
            // The deploy script starts NGINX when it is not running.
            await stack.deploy();
        }
    });
});

describe("the metric sender on proxies behind the front (PROXY protocol), into a stand-in for CloudWatch", awsCli, async () => {
    if (awsCli.skip !== undefined) return;
    const stack = await startTestEdge({ settings: { proxyCount: "2" } });
    const cloudWatch = await CloudWatchStandIn.start();
    after(() => cloudWatch.stop());
    const stateDir = (stack as unknown as { stateDir: string }).stateDir;
    const open: WebSocket[] = [];
    after(() => Promise.all(open.map((socket) => close(socket))));

    it("checks each proxy's health with the PROXY header its listener wants, and counts each one's sockets", async () => {
        for (let n = 0; n < 4; n++) open.push((await connectToEdge(stack, { localAddress: clientNetworkAddress(10 + n) })).socket);
        let total = 0;
        for (const proxy of ["proxy-1", "proxy-2"]) {
            const dimensions = { Stack: "wss-edge-test", Proxy: proxy };
            await sendMetrics("proxy", cloudWatch, stateDir, `Stack=wss-edge-test,Proxy=${proxy}`, {
                WSS_EDGE_ROOT: join(stateDir, proxy),
            });
            assert.equal(cloudWatch.latest("HealthCheck", dimensions), 1, `${proxy}: its listener takes PROXY protocol only`);
            total += cloudWatch.latest("OpenSockets", dimensions) ?? 0;
        }
        assert.equal(total, 4, "every socket through the front, on one proxy or the other");
    });
});
