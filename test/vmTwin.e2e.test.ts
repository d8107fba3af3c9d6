// The proxy VM for real, on this machine: a Debian 12 twin booted by systemd-nspawn from the
// stack's own user data, reached as the AWS stack reaches its VMs — through the release channel:
// releases in a store (s3rver, written and read with Debian's AWS CLI), Systems Manager's API and
// agent played by stand-ins that run the stack's own command documents, and the real
// deploy/ssm-send.sh driving them (twin/). Its NGINX serves WebSocket clients from this machine,
// through to backends on this machine; everything stays on the twins' links and is removed at the end.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import WebSocket from "ws";
import { metricsEnvironment } from "../deploy/deployBundle";
import { renderCloudConfig } from "../host/cloudConfig";
import { proxyFirstBootScript } from "../host/proxyHost";
import { type ReleaseStore, releaseFolders, releaseKey, type StoredRelease, storedRelease } from "../host/releaseChannel";
import { CloudWatchStandIn } from "../local/cloudWatchStandIn";
import { LocalStack } from "../local/localStack";
import { opensslOf } from "../local/platformNginx";
import { peerCertificateFingerprint } from "../local/probes";
import { hardFileLimit, sleep, waitUntil } from "../local/processes";
import { releaseOf } from "../plan/edgePlan";
import { close, connect, type EdgeSession, echo } from "../smoke/edgeClient";
import { TwinReleaseStore, twinRegion } from "../twin/releaseStore";
import { rootfsPath, twinMirror, userDataPackages } from "../twin/rootfs";
import { type SsmSendRequest, SsmStandIn, ssmSend } from "../twin/ssmStandIn";
import {
    bootProxyTwin,
    deployToTwin,
    gateBackends,
    publishEdgeRelease,
    TwinDeployError,
    twinEdgeDocuments,
    twinPlan,
} from "../twin/twinEdge";
import { runningTwinPids, sharedHostAddress, VmTwin } from "../twin/vmTwin";
import { once } from "./support/once";
import { requiring, unlessTwinCanRun } from "./support/requirements";

const run = promisify(execFile);
const twinRuns = requiring(unlessTwinCanRun());
const skip = twinRuns.skip !== undefined;

const workDir = mkdtempSync("/var/tmp/wss-edge-twin-test-");
after(() => rmSync(workDir, { recursive: true, force: true }));

/** The stack's documents, by the names the stand-in knows them. */
const documentNames = { release: "wss-edge-edge-release", gate: "wss-edge-backend-gate" } as const;

/** A release store of the suite's own (s3rver), stopped when the suite ends. */
async function storeOf(name: string): Promise<TwinReleaseStore> {
    let store: TwinReleaseStore | undefined;
    after(() => store?.stop());
    store = await TwinReleaseStore.start({ directory: join(workDir, `${name}-store`) });
    return store;
}

/** A twin of the proxy VM fetching from `store`, from the stack's user data unless told otherwise; removed when the suite ends. */
async function twinOf(
    name: string,
    subnet: number,
    store: ReleaseStore,
    options: Pick<Parameters<typeof bootProxyTwin>[0], "userData" | "boot" | "platform"> = {},
): Promise<VmTwin> {
    let twin: VmTwin | undefined;
    after(() => twin?.destroy());
    twin = await bootProxyTwin({ name, subnet, workDir, instanceId: `i-twin-${name}`, store, ...options });
    return twin;
}

/** The local stack's backends on `address` (a twin's link, or the shared one), stopped when the suite ends. */
async function backendsOn(address: string): Promise<LocalStack> {
    const stateDir = mkdtempSync(join(workDir, "backends-"));
    let stack: LocalStack | undefined;
    after(() => stack?.stop());
    stack = await LocalStack.start({ stateDir, edgePort: 0, bindAddress: address });
    return stack;
}

/** Systems Manager's stand-in for these twins, with the stack's edge documents. */
function startSsm(
    store: TwinReleaseStore,
    twins: readonly VmTwin[],
    autoScalingGroups?: Record<string, readonly string[]>,
): Promise<SsmStandIn> {
    const documents = twinEdgeDocuments(store.forTwins);
    return SsmStandIn.start({
        documents: { [documentNames.release]: documents.release, [documentNames.gate]: documents.gate },
        instances: Object.fromEntries(twins.map((twin) => [twin.options.instanceId, twin])),
        autoScalingGroups,
    });
}

/** The same, stopped when the suite ends. */
async function ssmFor(
    store: TwinReleaseStore,
    twins: readonly VmTwin[],
    autoScalingGroups?: Record<string, readonly string[]>,
): Promise<SsmStandIn> {
    let ssm: SsmStandIn | undefined;
    after(() => ssm?.stop());
    ssm = await startSsm(store, twins, autoScalingGroups);
    return ssm;
}

/** An edge release rolled as `pulumi up` rolls it: ssm-send.sh, with the store's `current` moved to it first. */
function roll(
    ssm: SsmStandIn,
    store: TwinReleaseStore,
    release: StoredRelease,
    targets: SsmSendRequest["targets"],
    extra: Partial<SsmSendRequest> = {},
) {
    return ssmSend(ssm, store, {
        documentName: documentNames.release,
        parameters: { Release: release.id },
        targets,
        what: `the edge release ${release.id.slice(0, 8)}`,
        pointer: { folder: releaseFolders.edge, release: release.id },
        ...extra,
    });
}

const connectThrough = (twin: VmTwin, stack: LocalStack) =>
    connect("wss://localhost/", { ca: stack.certificates.caCertificatePem, address: twin.address });

/** What the twin's NGINX runs now. */
const liveConfig = async (twin: VmTwin) => (await twin.exec("cat /etc/wss-edge/current/nginx.conf")).stdout;

describe("a proxy VM booted before the store holds any release", twinRuns, async () => {
    if (skip) return;
    const store = await storeOf("first");
    const twin = await twinOf("first", 11, store.forTwins);
    const stack = await backendsOn(twin.hostAddress);
    const ssm = await ssmFor(store, [twin]);
    const booted = await twin.waitForBoot();
    // What several tests stand on, made by whichever of them runs first, so that each also runs alone.
    const firstDeploy = once(async () => {
        const release = await publishEdgeRelease(store, stack, twinPlan(stack));
        return { release, result: await roll(ssm, store, release, [twin.options.instanceId]) };
    });
    const held: EdgeSession[] = [];
    after(() => Promise.all(held.map((s) => close(s.socket))));
    const heldSockets = once(async () => {
        await firstDeploy();
        for (let i = 0; i < 20; i++) held.push(await connectThrough(twin, stack));
        return held;
    });

    it("finishes first boot serving nothing while the store holds no release: NGINX stopped, port 443 closed, and first boot saying the deploy will bring it", async () => {
        assert.equal(booted, "done");
        const output = await twin.exec("cat /var/log/cloud-init-output.log");
        assert.match(
            output.stdout,
            new RegExp(`apply-release: no edge release in s3://${store.bucket}/edge yet; the deploy will bring it`),
        );
        assert.equal((await twin.exec("systemctl is-active nginx")).stdout.trim(), "inactive");
        await assert.rejects(openTcp(twin.address, 443), /ECONNREFUSED/, "nothing listens on 443");
    });

    it("starts from an image like the AMI: NGINX, curl, the exporter and the AWS CLI come from the user data's apt-get at first boot, from the twin's mirror", async () => {
        const tree = rootfsPath();
        for (const binary of ["usr/sbin/nginx", "usr/bin/curl", "usr/bin/prometheus-nginx-exporter", "usr/bin/aws"])
            assert.ok(!existsSync(join(tree, binary)), `${binary} is not in the image before first boot`);
        const mirrored = readFileSync(join(tree, twinMirror, "Packages"), "utf8");
        assert.ok(userDataPackages.includes("awscli"), `the user data installs the AWS CLI: ${userDataPackages.join(" ")}`);
        for (const pkg of userDataPackages) assert.match(mirrored, new RegExp(`^Package: ${pkg}$`, "m"), `the mirror serves ${pkg}`);
        const installed = await twin.exec(`dpkg-query -W -f='\${Status}\n' ${userDataPackages.join(" ")}`);
        assert.deepEqual(
            installed.stdout.trim().split("\n"),
            userDataPackages.map(() => "install ok installed"),
            installed.stderr,
        );
    });

    it("takes its first release from ssm-send.sh (the store's current moved to it, the edge document run on it) and serves clients through it", async () => {
        const { release, result } = await firstDeploy();
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.match(result.stdout, new RegExp(`\\[i-twin-first\\] apply-release: edge release ${release.id}`));
        assert.match(result.stdout, /\[i-twin-first\] deploy-edge-config: release \w+ is live \(previous: none\)/);
        assert.match(result.stdout, /ssm-send: the edge release \w+ done on 1 VM\(s\)/);
        assert.equal(await store.current(releaseFolders.edge), release.id);
        await heldSockets();
        assert.ok(held.every((s) => stack.backendNames().includes(s.hello.backend)));
        assert.equal(held[0].hello.headers["x-forwarded-for"], twin.hostAddress, "the backend saw the client's own address");
        assert.equal((await echo(held[0].socket, "through the twin")).toString(), "through the twin");
    });

    it("passes each backend's health gate from the twin, over mutual TLS with the credentials the store keeps for the proxies", async () => {
        // Systems Manager's agent runs a command as `sh -c _script.sh`: Debian's dash, here as on AWS.
        await gateBackends(twin, store, stack);
    });

    it("puts the user data's limits and network settings in force for NGINX", async () => {
        await firstDeploy();
        const sysctls = await twin.exec(
            "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_max_syn_backlog",
        );
        assert.deepEqual(sysctls.stdout.trim().split(/\s+/), ["1024", "65000", "4096", "8192"]);
        const limits = await twin.exec(
            `for pid in $(pgrep -f "nginx: (master|worker)"); do echo "$(cat /proc/$pid/cmdline | tr '\\0' ' ') $(grep 'Max open files' /proc/$pid/limits)"; done`,
        );
        const lines = limits.stdout.trim().split("\n");
        assert.ok(
            lines.some((l) => l.startsWith("nginx: master")) && lines.filter((l) => l.startsWith("nginx: worker")).length === 2,
            limits.stdout,
        );
        // systemd's LimitNOFILE for the master, worker_rlimit_nofile for the workers; each capped by
        // what this machine lets any process have (20,000 in this sandbox; nothing lower on EC2).
        const openFiles = (line: string) => Number(/Max open files\s+(\d+)/.exec(line)?.[1]);
        const workerLimit = Number(/^worker_rlimit_nofile (\d+);$/m.exec(twinPlan(stack).nginxConfig)?.[1]);
        for (const line of lines) {
            const expected = Math.min(line.startsWith("nginx: master") ? 140000 : workerLimit, hardFileLimit());
            assert.equal(openFiles(line), expected, line);
        }
        const unit = await twin.exec("systemctl show nginx -p LimitNOFILE --value; systemctl show nginx -p ExecStart --value");
        assert.match(unit.stdout, /^140000\n/);
        assert.match(unit.stdout, /\/usr\/sbin\/nginx -c \/etc\/wss-edge\/current\/nginx\.conf/);
    });

    it("takes a second release with a changed setting as a reload: the open sockets stay", async () => {
        await heldSockets();
        const master = (await twin.exec("cat /run/nginx.pid")).stdout.trim();
        assert.match(master, /^\d+$/, "NGINX's master pid, from its pid file");
        await deployToTwin(twin, store, stack, twinPlan(stack, { idleTimeoutSeconds: "120" }));
        assert.equal((await twin.exec("cat /run/nginx.pid")).stdout.trim(), master, "reloaded, not restarted");
        assert.match(await liveConfig(twin), /proxy_read_timeout 120s;/);
        assert.equal(held.filter((s) => s.socket.readyState !== WebSocket.OPEN).length, 0);
        const echoes = await Promise.all(held.map((s, i) => echo(s.socket, `after the second deploy ${i}`)));
        assert.ok(echoes.every((data, i) => data.toString() === `after the second deploy ${i}`));
    });

    it("runs the metric sender from its release once a minute (a systemd timer), into a stand-in for CloudWatch: the sockets it holds exactly, its ceiling, its health", async () => {
        await heldSockets();
        const cloudWatch = await CloudWatchStandIn.start(sharedHostAddress);
        try {
            const plan = twinPlan(stack);
            const metrics = metricsEnvironment({ namespace: "WssEdge", stack: "twin", region: twinRegion, endpoint: cloudWatch.endpoint });
            const release = await store.publish("edge", releaseFolders.edge, releaseOf(plan, stack.certificates, metrics));
            const rolled = await roll(ssm, store, release, [twin.options.instanceId]);
            assert.equal(rolled.code, 0, rolled.stderr);
            assert.equal((await twin.exec("systemctl is-active wss-edge-metrics.timer")).stdout.trim(), "active");
            const host = { Stack: "twin", Proxy: twin.options.instanceId };
            // The timer runs it at the start of every minute.
            await waitUntil(90_000, () => cloudWatch.latest("OpenSockets", host) !== undefined, "no metrics from the twin's timer");
            const open = held.filter((s) => s.socket.readyState === WebSocket.OPEN).length;
            assert.equal(cloudWatch.latest("OpenSockets", host), open);
            assert.equal(cloudWatch.latest("OpenSockets", { Stack: "twin", Role: "proxy" }), open, "and for the role's alarms");
            assert.equal(cloudWatch.latest("MaxSockets", host), plan.maxSockets);
            assert.equal(cloudWatch.latest("HealthCheck", host), 1);
            assert.ok((cloudWatch.latest("EdgeCertificateDaysLeft", host) ?? 0) > 300, "the stack CA's certificate, a year");

            // A release that says nothing of metrics (as off AWS) takes the timer and the sender away.
            const without = await store.publish("edge", releaseFolders.edge, releaseOf(plan, stack.certificates));
            const plain = await roll(ssm, store, without, [twin.options.instanceId]);
            assert.equal(plain.code, 0, plain.stderr);
            assert.equal((await twin.exec("systemctl is-enabled wss-edge-metrics.timer")).code === 0, false, "the timer is gone");
            assert.equal((await twin.exec("test -e /etc/wss-edge/bin/edge-metrics.sh")).code, 1, "and the sender");
        } finally {
            await cloudWatch.stop();
        }
    });

    it("starts NGINX again when it dies (systemd restarts it from the live release): a dead NGINX on a healthy VM is not an outage that lasts", async () => {
        await firstDeploy();
        // Day two on a proxy the previous release deployed (no restart drop-in yet): this release's
        // deploy installs it with a reload, the master and the open sockets stay.
        const dropIn = "/etc/systemd/system/nginx.service.d/wss-edge-restart.conf";
        await twin.exec(`rm -f ${dropIn} && systemctl daemon-reload`);
        const before = (await twin.exec("cat /run/nginx.pid")).stdout.trim();
        const open = await connectThrough(twin, stack);
        await deployToTwin(twin, store, stack, twinPlan(stack, { idleTimeoutSeconds: "90" }));
        assert.equal((await twin.exec(`test -f ${dropIn}`)).code, 0, "the deploy installed the drop-in");
        assert.equal((await twin.exec("cat /run/nginx.pid")).stdout.trim(), before, "reloaded, not restarted");
        assert.equal((await echo(open.socket, "through the upgrade")).toString(), "through the upgrade");
        await close(open.socket);
        const master = (await twin.exec("cat /run/nginx.pid")).stdout.trim();
        assert.match(master, /^\d+$/, "NGINX's master pid, from its pid file");
        const killed = await twin.exec(`kill -9 ${master}`);
        assert.equal(killed.code, 0, `master ${JSON.stringify(master)}: ${killed.stderr}`);
        await waitUntil(
            30000,
            async () => {
                const now = await twin.exec("systemctl is-active --quiet nginx && cat /run/nginx.pid");
                return now.code === 0 && now.stdout.trim() !== master;
            },
            "NGINX did not come back after its master was killed",
        ).catch(async (error: Error) => {
            throw new Error(`${error.message}\n${await nginxAccount(twin)}`);
        });
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "after a crash")).toString(), "after a crash");
        await close(session.socket);
    });

    it("runs the backend health agent as a systemd service: a frozen backend is marked down in the live config, and back after SIGCONT", async () => {
        await heldSockets();
        const service = await twin.exec("systemctl is-active wss-edge-backend-health; systemctl is-enabled wss-edge-backend-health");
        assert.deepEqual(service.stdout.trim().split("\n"), ["active", "enabled"], service.stderr);
        const frozen = stack.outputs.backends[1];
        const port = frozen.address.split(":")[1];
        const marked = (state: "down" | "up") => async () => {
            const line = new RegExp(`server ${twin.hostAddress.replace(/\./g, "\\.")}:${port} ([^;\n]*);`).exec(await liveConfig(twin));
            return line !== null && line[1].endsWith(" down") === (state === "down");
        };
        process.kill(frozen.pid, "SIGSTOP");
        try {
            await waitUntil(60000, marked("down"), `the twin's agent did not mark ${frozen.name} down`);
        } finally {
            process.kill(frozen.pid, "SIGCONT");
        }
        await waitUntil(60000, marked("up"), `the twin's agent did not bring ${frozen.name} back`);
        const journal = await twin.exec("journalctl -u wss-edge-backend-health --no-pager -o cat");
        assert.match(journal.stdout, new RegExp(`:${port} marked down after 2 failed checks`));
        assert.match(journal.stdout, new RegExp(`:${port} is back after 2 good checks`));
        assert.equal(held.filter((s) => s.socket.readyState !== WebSocket.OPEN && s.hello.backend !== frozen.name).length, 0);
    });

    it("refuses a release nginx -t rejects: ssm-send.sh fails with NGINX's own message, the store's current is back at the live release, and the twin serves it still", async () => {
        await firstDeploy();
        const live = await store.current(releaseFolders.edge);
        assert.ok(live, "a release is live");
        const configBefore = await liveConfig(twin);
        const open = await connectThrough(twin, stack);
        const files = releaseOf(twinPlan(stack, { idleTimeoutSeconds: "77" }), stack.certificates);
        const bad = await store.publish("edge", releaseFolders.edge, {
            ...files,
            "nginx.conf": `${files["nginx.conf"]}\nno_such_directive on;\n`,
        });
        const result = await roll(ssm, store, bad, [twin.options.instanceId]);
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(result.stderr, /\[i-twin-first\] .*\[emerg\] .*unknown directive "no_such_directive"/);
        assert.match(
            result.stderr,
            /\[i-twin-first\] deploy-edge-config: nginx -t rejected the new config; the running config is unchanged/,
        );
        assert.match(result.stderr, new RegExp(`ssm-send: s3://${store.bucket}/edge/current is back at ${live}`));
        assert.match(result.stderr, /ssm-send: the edge release \w+ failed on i-twin-first \(Failed\)/);
        assert.equal(await store.current(releaseFolders.edge), live, "a VM booting now gets the live release");
        assert.equal(await liveConfig(twin), configBefore);
        assert.equal(
            (await echo(open.socket, "through a refused release")).toString(),
            "through a refused release",
            "an open socket is untouched",
        );
        await close(open.socket);
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "after a refused release")).toString(), "after a refused release");
        await close(session.socket);
    });

    it("refuses a release whose bytes are not what its id says: ssm-send.sh fails with the VM's refusal, the store's current is back, and the twin serves the live release", async () => {
        await firstDeploy();
        const live = await store.current(releaseFolders.edge);
        const configBefore = await liveConfig(twin);
        // A release as published, then its object changed in the store (a file slipped in).
        const genuine = storedRelease("edge", releaseOf(twinPlan(stack, { idleTimeoutSeconds: "78" }), stack.certificates));
        await store.put(
            releaseKey(releaseFolders.edge, genuine.id),
            `${genuine.content}evil.conf ${Buffer.from("evil").toString("base64")}\n`,
        );
        const result = await roll(ssm, store, genuine, [twin.options.instanceId]);
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(
            result.stderr,
            new RegExp(`\\[i-twin-first\\] apply-release: release ${genuine.id}: its content hashes to [0-9a-f]{64}; refusing it`),
        );
        assert.doesNotMatch(result.stdout + result.stderr, /deploy-edge-config/, "the release's deploy script never ran");
        assert.match(result.stderr, new RegExp(`ssm-send: s3://${store.bucket}/edge/current is back at ${live}`));
        assert.equal(await store.current(releaseFolders.edge), live);
        assert.equal(await liveConfig(twin), configBefore);
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "after a tampered release")).toString(), "after a tampered release");
        await close(session.socket);
    });

    it("puts the store's current back when a VM never comes online: a failed run leaves new VMs on the live release", async () => {
        await firstDeploy();
        const live = await store.current(releaseFolders.edge);
        // An instance Systems Manager knows whose agent never came online: a twin never booted.
        const lost = new VmTwin({ name: "lost", rootfs: rootfsPath(), workDir, subnet: 250, userData: "", instanceId: "i-twin-lost" });
        const lostSsm = await startSsm(store, [twin, lost]);
        const next = await publishEdgeRelease(store, stack, twinPlan(stack, { idleTimeoutSeconds: "79" }));
        const result = await roll(lostSsm, store, next, ["i-twin-lost"], { onlineTimeoutSeconds: 3 }).finally(() => lostSsm.stop());
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(result.stderr, /ssm-send: i-twin-lost is not online in Systems Manager after 3s \(last: ConnectionLost\)/);
        assert.equal(await store.current(releaseFolders.edge), live, "the pointer names a release no VM has applied");
    });

    it("comes back serving the current release after a reboot from inside, without running its user data again", async () => {
        await firstDeploy();
        await deployToTwin(twin, store, stack, twinPlan(stack, { idleTimeoutSeconds: "180" }));
        // A user data edited in place (on EC2: modify-instance-attribute while stopped) is not run again.
        const edited = await twin.exec(
            "sed -i 's|^runcmd:|runcmd:\\n  - [touch, /var/tmp/edited-user-data-ran]|' /var/lib/cloud/seed/nocloud/user-data",
        );
        assert.equal(edited.code, 0, edited.stderr);
        await Promise.all(held.splice(0).map((s) => close(s.socket)));
        // Rebooted from inside, as an operator's `systemctl reboot` on the VM: it comes back by itself.
        const [before] = runningTwinPids(`wss-twin-${twin.options.name}`);
        await twin.exec("systemctl reboot");
        await waitUntil(
            120000,
            () => (runningTwinPids(`wss-twin-${twin.options.name}`)[0] ?? before) !== before,
            "the twin did not reboot",
        );
        assert.equal(await twin.waitForBoot(), "done");
        await waitForNginx(twin);
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "after a reboot")).toString(), "after a reboot");
        await close(session.socket);
        assert.match(await liveConfig(twin), /proxy_read_timeout 180s;/, "the release deployed before the reboot");
        assert.equal(
            (await twin.exec("test -e /var/tmp/edited-user-data-ran")).code,
            1,
            "cloud-init ran the edited user data on the same instance",
        );
    });
});

describe("a new proxy VM (a replacement, or one its group launched)", twinRuns, async () => {
    if (skip) return;
    const store = await storeOf("second");
    // Its disk and link first: the backends listen on its link, and the release names them.
    const twin = await twinOf("second", 12, store.forTwins, { boot: false });
    const stack = await backendsOn(twin.hostAddress);
    const release = await publishEdgeRelease(store, stack, twinPlan(stack, { idleTimeoutSeconds: "95" }));
    await store.setCurrent(releaseFolders.edge, release.id);
    await twin.start();

    it("serves the store's current release when its first boot ends, with no deploy run: a new VM serves on its own", async () => {
        const booted = await twin.waitForBoot();
        const output = await twin.exec("cat /var/log/cloud-init-output.log");
        assert.equal(booted, "done", `${output.stdout.split("\n").slice(-40).join("\n")}\n${await nginxAccount(twin)}`);
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "on the new VM")).toString(), "on the new VM");
        await close(session.socket);
        assert.match(await liveConfig(twin), /proxy_read_timeout 95s;/, "the current release's config");
        assert.match(output.stdout, new RegExp(`apply-release: edge release ${release.id}`));
        assert.match(output.stdout, /deploy-edge-config: release \w+ is live \(previous: none\)/);
        // Where Systems Manager's agent (the stand-in too) keeps every command it runs: none ran.
        assert.equal((await twin.exec("test -e /var/lib/amazon/ssm")).code, 1, "no command reached the VM");
    });
});

describe("a Debian 13 proxy VM (proxyPlatform debian-13): its own image, NGINX 1.26, the hybrid group negotiated", twinRuns, async () => {
    if (skip) return;
    const settings = { proxyPlatform: "debian-13" };
    const store = await storeOf("trixie");
    const twin = await twinOf("trixie", 24, store.forTwins, { boot: false, platform: "debian-13" });
    const stack = await backendsOn(twin.hostAddress);
    // As when a one-VM stack changes platform: the store's current release is still Debian 12's
    // when the new Debian 13 VM boots, and the update's deploy brings it its own.
    const before = await publishEdgeRelease(store, stack, twinPlan(stack, {}));
    await store.setCurrent(releaseFolders.edge, before.id);
    await twin.start();
    const booted = await twin.waitForBoot();
    const firstBoot = (await twin.exec("cat /var/log/cloud-init-output.log")).stdout;
    const deployed = await deployToTwin(twin, store, stack, twinPlan(stack, settings));

    it("boots Debian 13 and passes its first boot's platform check; Debian 12's release, still current, is left out; the deploy brings its own, served by Debian 13's NGINX", async () => {
        assert.equal(booted, "done", `${firstBoot.split("\n").slice(-30).join("\n")}\n${await nginxAccount(twin)}`);
        assert.match(
            firstBoot,
            /this proxy runs debian-13 and the release is for debian-12: nothing is live here until a release for debian-13 arrives/,
        );
        assert.match(deployed, /release \w+ is live \(previous: none\)/);
        assert.match((await twin.exec(". /etc/os-release && echo debian-$VERSION_ID")).stdout, /^debian-13$/m);
        assert.match((await twin.exec("nginx -v 2>&1")).stdout, /nginx\/1\.26\./);
        assert.match(await liveConfig(twin), /ssl_ecdh_curve X25519MLKEM768:X25519:prime256v1:secp384r1;/);
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "on Debian 13")).toString(), "on Debian 13");
        await close(session.socket);
    });

    it("negotiates X25519MLKEM768 with a client that offers it (Debian 13's openssl), X25519 with one that does not", async () => {
        const caFile = join(workDir, "trixie-ca.pem");
        writeFileSync(caFile, stack.certificates.caCertificatePem);
        const handshake = async (openssl: string) =>
            (
                await run(
                    "sh",
                    [
                        "-c",
                        'echo Q | "$0" s_client -connect "$1:443" -servername localhost -CAfile "$2" -verify_return_error 2>&1',
                        openssl,
                        twin.address,
                        caFile,
                    ],
                    {
                        timeout: 30000,
                    },
                )
            ).stdout;
        const hybrid = await handshake(opensslOf("debian-13", join(workDir, "bin")));
        assert.match(hybrid, /Verify return code: 0 \(ok\)/);
        assert.match(hybrid, /Negotiated TLS1\.3 group: X25519MLKEM768/);
        assert.match(await handshake("openssl"), /Server Temp Key: X25519, 253 bits/);
    });
});

describe("certificate acme on the VM twin: Pebble's certificate served, and each renewal rolled to it", twinRuns, async () => {
    if (skip) return;
    const lifetimeSeconds = 120;
    const settings = { certificate: "acme" };
    const store = await storeOf("acme");
    // Torn down stack first: it stops renewing (a renewal under way finishes on the twin), then the twin goes.
    let twinStarted: VmTwin | undefined;
    let started: LocalStack | undefined;
    after(async () => {
        await started?.stop();
        await twinStarted?.destroy();
    });
    twinStarted = await bootProxyTwin({ name: "acme", subnet: 18, workDir, instanceId: "i-twin-acme", store: store.forTwins, boot: false });
    const twin = twinStarted;
    const stateDir = mkdtempSync(join(workDir, "acme-backends-"));
    started = await LocalStack.start({
        stateDir,
        edgePort: 0,
        bindAddress: twin.hostAddress,
        settings,
        acmeLifetimeSeconds: lifetimeSeconds,
    });
    const stack = started;
    const release = await publishEdgeRelease(store, stack, twinPlan(stack, settings));
    await store.setCurrent(releaseFolders.edge, release.id);
    await twin.start();
    const booted = await twin.waitForBoot();
    // As pulumi up rolls a renewed certificate to the proxies: a new release, the edge document run on the VM.
    stack.onCertificateRenewed(async () => {
        await deployToTwin(twin, store, stack, twinPlan(stack, settings));
    });
    const served = () => peerCertificateFingerprint(twin.address, 443, { ca: stack.clientCaPem, servername: "localhost" });
    const current = () => new X509Certificate(stack.certificates.edgeCertificateChainPem).fingerprint256;

    it("serves Pebble's certificate for localhost from its first release: a client trusting only Pebble's root connects", async () => {
        assert.equal(booted, "done", await nginxAccount(twin));
        assert.match(new X509Certificate(stack.certificates.edgeCertificateChainPem).issuer, /Pebble/);
        assert.notEqual(await served(), undefined);
        const session = await connect("wss://localhost/", { ca: stack.clientCaPem, address: twin.address });
        assert.equal((await echo(session.socket, "trusted")).toString(), "trusted");
        await close(session.socket);
    });

    it("takes a renewed certificate as a release, a reload that keeps the open sockets", async () => {
        const session = await connect("wss://localhost/", { ca: stack.clientCaPem, address: twin.address });
        try {
            const first = await served();
            // Renewed with a third of its 120 s left; bounded by two lifetimes.
            await waitUntil(
                2 * lifetimeSeconds * 1000,
                async () => {
                    const now = await served();
                    return now !== undefined && now !== first && now === current();
                },
                "the twin kept serving the first certificate",
            );
            assert.equal((await echo(session.socket, "kept")).toString(), "kept", "the socket opened before the renewal");
        } finally {
            await close(session.socket);
        }
    });
});

describe("a rolling release across the proxies of a group", twinRuns, async () => {
    if (skip) return;
    const store = await storeOf("roll");
    const twins = [
        await twinOf("roll-a", 15, store.forTwins, { boot: false }),
        await twinOf("roll-b", 16, store.forTwins, { boot: false }),
    ];
    // The backends both proxies front, on the address every twin's link carries.
    const stack = await backendsOn(sharedHostAddress);
    const first = await publishEdgeRelease(store, stack, twinPlan(stack));
    await store.setCurrent(releaseFolders.edge, first.id);
    await Promise.all(twins.map((twin) => twin.start()));
    await Promise.all(twins.map((twin) => twin.waitForBoot()));
    const ids = twins.map((twin) => twin.options.instanceId);
    const ssm = await ssmFor(store, twins, { edge: ids });

    it("rolls a new release through ssm-send.sh one proxy at a time, and never has both out of service", async () => {
        for (const twin of twins) assert.equal(await healthz(twin, stack), true, `${twin.options.name} serves the first release`);
        const next = await publishEdgeRelease(store, stack, twinPlan(stack, { idleTimeoutSeconds: "150" }));
        // Each proxy's /healthz over TLS, every 100 ms, until the roll ends (bounded: 10 minutes of probes).
        const probes: { at: number; serving: boolean[] }[] = [];
        let rolling = true;
        const prober = (async () => {
            for (let i = 0; rolling && i < 6000; i++) {
                const at = Date.now();
                probes.push({ at, serving: await Promise.all(twins.map((twin) => healthz(twin, stack))) });
                await sleep(Math.max(0, at + 100 - Date.now()));
            }
        })();
        const result = await roll(ssm, store, next, "asg:edge").finally(() => (rolling = false));
        await prober;
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.match(result.stdout, /ssm-send: the edge release \w+ done on 2 VM\(s\)/);
        const runs = ssm.invocations.filter((i) => i.parameters.Release === next.id);
        assert.deepEqual(
            runs.map((i) => [i.instanceId, i.status]),
            ids.map((id) => [id, "Success"]),
            "one run per proxy, in the group's order",
        );
        const [a, b] = runs;
        assert.ok(
            a.endedAt !== undefined && b.startedAt !== undefined && b.startedAt >= a.endedAt,
            "the second proxy's run started after the first's ended",
        );
        const outage = probes.filter((p) => !p.serving.some(Boolean));
        assert.deepEqual(outage, [], "instants at which neither proxy served");
        for (const run of runs) {
            const during = probes.filter((p) => p.at >= (run.startedAt ?? 0) && p.at <= (run.endedAt ?? 0));
            assert.ok(during.length >= 3, `${during.length} probes while ${run.instanceId} applied the release: the prober watched it`);
        }
        for (const twin of twins)
            assert.match(await liveConfig(twin), /proxy_read_timeout 150s;/, `${twin.options.name} runs the new release`);
        assert.equal(await store.current(releaseFolders.edge), next.id);
    });
});

describe("twins by name", twinRuns, async () => {
    if (skip) return;
    const store = await storeOf("named");
    const twin = await twinOf("named", 14, store.forTwins);
    await twin.waitForBoot();

    it("refuses a second twin of a running twin's name, and touches nothing of the first", async () => {
        await assert.rejects(
            bootProxyTwin({ name: "named", subnet: 14, workDir, instanceId: "i-twin-second", store: store.forTwins }),
            /a twin named "named" is running \(systemd-nspawn pid \d+\)/,
        );
        assert.equal((await twin.exec("true")).code, 0, "the first still runs");
    });

    it("npm run vm-twin -- down stops a twin a killed up left booted, and removes its disk and network", async () => {
        // What `up` leaves when it is killed: the twin named "proxy" booted, in the CLI's folder, on its subnet.
        const left = await bootProxyTwin({
            name: "proxy",
            subnet: 1,
            workDir: "/var/tmp/wss-edge-vm-twin/instances",
            instanceId: "i-twin-left",
            store: store.forTwins,
        });
        try {
            assert.equal(runningTwinPids("wss-twin-proxy").length, 1);
            const down = await run(process.execPath, ["--import", "tsx", "twin/cli.ts", "down"], { cwd: join(__dirname, "..") });
            assert.match(down.stdout, /vm twin: removed/);
            assert.deepEqual(runningTwinPids("wss-twin-proxy"), [], "its systemd-nspawn is gone");
            const namespaces = await run("ip", ["netns", "list"]);
            assert.doesNotMatch(namespaces.stdout, /wss-twin-proxy/);
        } finally {
            // (Nothing is left to remove when `down` did its work.)
            await left.destroy();
        }
    });
});

describe("a first boot that fails", twinRuns, async () => {
    if (skip) return;
    const store = await storeOf("failed");
    // The stack's own first-boot script, and then a step that fails, as a full disk or a
    // missing package would make it.
    const twin = await twinOf("failed", 13, store.forTwins, {
        userData: () =>
            renderCloudConfig({
                purpose: "wss-edge proxy whose first boot fails",
                files: [{ path: "/usr/local/sbin/wss-edge-first-boot", permissions: "0755", content: proxyFirstBootScript }],
                runcmd: [
                    ["/usr/local/sbin/wss-edge-first-boot"],
                    ["sh", "-c", "echo 'E: Unable to locate package nginx-bogus' >&2; exit 100"],
                ],
            }),
    });
    const stack = await backendsOn(twin.hostAddress);

    it("fails the deploy with cloud-init's own account of it, not a later error", async () => {
        assert.equal(await twin.waitForBoot(), "error");
        await assert.rejects(deployToTwin(twin, store, stack, twinPlan(stack)), (error: Error) => {
            assert.ok(error instanceof TwinDeployError, String(error));
            assert.match(error.result.stderr, /wss-edge: first boot of wss-edge-proxy failed \(cloud-init status exit 1\)/);
            assert.match(error.result.stderr, /status: error/);
            assert.match(error.result.stderr, /E: Unable to locate package nginx-bogus/, "the failing step's own output");
            assert.doesNotMatch(error.result.stderr, /deploy-edge-config/, "the deploy script never ran");
            return true;
        });
        assert.equal(await store.current(releaseFolders.edge), undefined, "the store's current is back at none");
    });
});

describe("user data cloud-init cannot read", twinRuns, async () => {
    if (skip) return;
    const unread: ReleaseStore = { bucket: "wss-edge-twin-unread", region: twinRegion, endpointUrl: `http://${sharedHostAddress}:9` };
    const twin = await twinOf("badyaml", 17, unread, {
        userData: () => "#cloud-config\nwrite_files:\n  - path: /etc/x\n    content: [unclosed\n",
    });

    it("fails the wait for the VM at once with cloud-init's own warning, not after the boot timeout", async () => {
        await assert.rejects(twin.waitForBoot(), (error: Error) => {
            assert.match(error.message, /first boot finished without running the user data's commands; cloud-init said:/);
            assert.match(error.message, /Failed loading yaml blob\. Invalid format at line 4/);
            return true;
        });
    });
});

/** NGINX's unit and its journal on the twin: what a failure message needs. */
async function nginxAccount(twin: VmTwin): Promise<string> {
    return (await twin.exec("systemctl status nginx --no-pager -l; journalctl -u nginx --no-pager -n 60 -o short-precise")).stdout;
}

/** NGINX starts after the twin's boot; a reboot's clients wait for it like a load balancer's health check. */
async function waitForNginx(twin: VmTwin): Promise<void> {
    for (let i = 0; i < 60; i++) {
        if ((await twin.exec("systemctl is-active --quiet nginx")).code === 0) return;
        await sleep(500);
    }
    throw new Error(`nginx did not come back after the reboot:\n${(await twin.exec("systemctl status nginx --no-pager")).stdout}`);
}

/** Whether the twin's NGINX answers its health check over TLS now, as a load balancer asks it (one second at most). */
function healthz(twin: VmTwin, stack: LocalStack): Promise<boolean> {
    return new Promise((done) => {
        const asked = request(
            {
                host: twin.address,
                port: 443,
                path: "/healthz",
                servername: "localhost",
                headers: { Host: "localhost" },
                ca: stack.certificates.caCertificatePem,
                agent: false,
                timeout: 1000,
            },
            (response) => {
                let body = "";
                response.on("data", (d) => (body += d));
                response.on("end", () => done(response.statusCode === 200 && body === "ok\n"));
                response.on("error", () => done(false));
            },
        );
        asked.on("timeout", () => asked.destroy());
        asked.on("error", () => done(false));
        asked.end();
    });
}

/** Resolves when `host:port` accepts a TCP connection; rejects with the error otherwise. */
function openTcp(host: string, port: number): Promise<void> {
    return new Promise((done, fail) => {
        const socket = tcpConnect({ host, port, timeout: 3000 }, () => {
            socket.destroy();
            done();
        });
        socket.on("timeout", () => socket.destroy(new Error("timeout")));
        socket.on("error", fail);
    });
}
