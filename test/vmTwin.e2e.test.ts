// The proxy VM for real, on this machine: a Debian 12 twin booted by systemd-nspawn from the
// stack's own user data, deployed to over SSH with its pinned host key, exactly as the stack's
// remote commands do it (twin/). Its NGINX serves WebSocket clients from this machine, through to
// backends on this machine; everything stays on the twin's link and is removed at the end.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import WebSocket from "ws";
import { renderCloudConfig } from "../host/cloudConfig";
import { proxyFirstBootScript } from "../host/proxyHost";
import { LocalStack } from "../local/localStack";
import { hardFileLimit, waitUntil } from "../local/processes";
import { close, connect, type EdgeSession, echo } from "../smoke/edgeClient";
import { rootfsPath, twinMirror, userDataPackages } from "../twin/rootfs";
import { bootProxyTwin, deployToTwin, gateBackends, TwinDeployError, twinPlan } from "../twin/twinEdge";
import { runningTwinPids, type VmTwin } from "../twin/vmTwin";
import { requiring, unlessTwinCanRun } from "./support/requirements";

const run = promisify(execFile);
const twinRuns = requiring(unlessTwinCanRun());
const skip = twinRuns.skip !== undefined;

const workDir = mkdtempSync("/var/tmp/wss-edge-twin-test-");
after(() => rmSync(workDir, { recursive: true, force: true }));

/** A twin of the proxy VM from `userData` (the stack's by default), removed when the file ends. */
async function twinOf(
    name: string,
    subnet: number,
    instanceId: string,
    userData?: Parameters<typeof bootProxyTwin>[0]["userData"],
): Promise<VmTwin> {
    let twin: VmTwin | undefined;
    after(() => twin?.destroy());
    twin = await bootProxyTwin({ name, subnet, workDir, instanceId, userData });
    return twin;
}

/** The local stack's backends on the twin's link, stopped when the file ends. */
async function backendsFor(twin: VmTwin): Promise<LocalStack> {
    const stateDir = mkdtempSync(join(workDir, "backends-"));
    let stack: LocalStack | undefined;
    after(() => stack?.stop());
    stack = await LocalStack.start({ stateDir, edgePort: 0, bindAddress: twin.hostAddress });
    return stack;
}

const connectThrough = (twin: VmTwin, stack: LocalStack) =>
    connect("wss://localhost/", { ca: stack.certificates.caCertificatePem, address: twin.address });

describe("the proxy VM's twin", twinRuns, async () => {
    if (skip) return;
    const twin = await twinOf("first", 11, "i-twin-first");
    const stack = await backendsFor(twin);
    await twin.waitForSsh();
    // What several tests stand on, made by whichever of them runs first, so that each also runs alone.
    const firstDeploy = once(async () => {
        await gateBackends(twin, stack);
        return deployToTwin(twin, stack, twinPlan(stack));
    });
    const held: EdgeSession[] = [];
    after(() => Promise.all(held.map((s) => close(s.socket))));
    const heldSockets = once(async () => {
        await firstDeploy();
        for (let i = 0; i < 20; i++) held.push(await connectThrough(twin, stack));
        return held;
    });

    it("starts from an image like the AMI: NGINX, curl and the exporter come from the user data's apt-get at first boot, from the twin's mirror", async () => {
        const tree = rootfsPath();
        for (const binary of ["usr/sbin/nginx", "usr/bin/curl", "usr/bin/prometheus-nginx-exporter"])
            assert.ok(!existsSync(join(tree, binary)), `${binary} is not in the image before first boot`);
        const mirrored = readFileSync(join(tree, twinMirror, "Packages"), "utf8");
        for (const pkg of userDataPackages) assert.match(mirrored, new RegExp(`^Package: ${pkg}$`, "m"), `the mirror serves ${pkg}`);
        await firstDeploy();
        const installed = await twin.ssh(`dpkg-query -W -f='\${Status}\n' ${userDataPackages.join(" ")}`);
        assert.deepEqual(
            installed.stdout.trim().split("\n"),
            userDataPackages.map(() => "install ok installed"),
            installed.stderr,
        );
    });

    it("finishes first boot from the stack's user data, and answers SSH only with the host key the stack pinned", async () => {
        const status = await twin.ssh("cloud-init status --wait --long");
        assert.equal(status.code, 0, status.stdout + status.stderr);
        assert.match(status.stdout, /status: done/);
        // What the twin's sshd presents is the key the stack issued and preset in the user data.
        const { stdout } = await run("ssh-keyscan", ["-t", "ed25519", twin.address]);
        assert.equal(stdout.trim().split(/\s+/).slice(1, 3).join(" "), twin.options.hostPublicKey.split(/\s+/).slice(0, 2).join(" "));
    });

    it("takes the first deploy after every backend passed its health gate from the twin, and serves clients through it", async () => {
        assert.match(await firstDeploy(), /release \w+ is live \(previous: none\)/);
        await heldSockets();
        assert.ok(held.every((s) => stack.backendNames().includes(s.hello.backend)));
        assert.equal(held[0].hello.headers["x-forwarded-for"], twin.hostAddress, "the backend saw the client's own address");
        assert.equal((await echo(held[0].socket, "through the twin")).toString(), "through the twin");
    });

    it("puts the user data's limits and network settings in force for NGINX", async () => {
        await firstDeploy();
        const sysctls = await twin.ssh(
            "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_max_syn_backlog",
        );
        assert.deepEqual(sysctls.stdout.trim().split(/\s+/), ["1024", "65000", "4096", "8192"]);
        const limits = await twin.ssh(
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
        const unit = await twin.ssh("systemctl show nginx -p LimitNOFILE --value; systemctl show nginx -p ExecStart --value");
        assert.match(unit.stdout, /^140000\n/);
        assert.match(unit.stdout, /\/usr\/sbin\/nginx -c \/etc\/wss-edge\/current\/nginx\.conf/);
    });

    it("takes a second deploy with a changed setting as a reload: the open sockets stay", async () => {
        await heldSockets();
        const master = (await twin.ssh("sudo cat /run/nginx.pid")).stdout.trim();
        assert.match(master, /^\d+$/, "NGINX's master pid, from its pid file (root's only)");
        await deployToTwin(twin, stack, twinPlan(stack, { idleTimeoutSeconds: "120" }));
        assert.equal((await twin.ssh("sudo cat /run/nginx.pid")).stdout.trim(), master, "reloaded, not restarted");
        assert.match((await twin.ssh("sudo cat /etc/wss-edge/current/nginx.conf")).stdout, /proxy_read_timeout 120s;/);
        assert.equal(held.filter((s) => s.socket.readyState !== WebSocket.OPEN).length, 0);
        const echoes = await Promise.all(held.map((s, i) => echo(s.socket, `after the second deploy ${i}`)));
        assert.ok(echoes.every((data, i) => data.toString() === `after the second deploy ${i}`));
    });

    it("starts NGINX again when it dies (systemd restarts it from the live release): a dead NGINX on a healthy VM is not an outage that lasts", async () => {
        await firstDeploy();
        // Day two on a proxy the previous release deployed (no restart drop-in yet): this release's
        // deploy installs it with a reload, the master and the open sockets stay.
        const dropIn = "/etc/systemd/system/nginx.service.d/wss-edge-restart.conf";
        await twin.ssh(`sudo rm -f ${dropIn} && sudo systemctl daemon-reload`);
        const before = (await twin.ssh("sudo cat /run/nginx.pid")).stdout.trim();
        const open = await connectThrough(twin, stack);
        await deployToTwin(twin, stack, twinPlan(stack, { idleTimeoutSeconds: "90" }));
        assert.equal((await twin.ssh(`test -f ${dropIn}`)).code, 0, "the deploy installed the drop-in");
        assert.equal((await twin.ssh("sudo cat /run/nginx.pid")).stdout.trim(), before, "reloaded, not restarted");
        assert.equal((await echo(open.socket, "through the upgrade")).toString(), "through the upgrade");
        await close(open.socket);
        const master = (await twin.ssh("sudo cat /run/nginx.pid")).stdout.trim();
        assert.match(master, /^\d+$/, "NGINX's master pid, from its pid file (root's only)");
        const killed = await twin.ssh(`sudo kill -9 ${master}`);
        assert.equal(killed.code, 0, `master ${JSON.stringify(master)}: ${killed.stderr}`);
        await waitUntil(
            30000,
            async () => {
                const now = await twin.ssh("systemctl is-active --quiet nginx && sudo cat /run/nginx.pid");
                return now.code === 0 && now.stdout.trim() !== master;
            },
            "NGINX did not come back after its master was killed",
        );
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "after a crash")).toString(), "after a crash");
        await close(session.socket);
    });

    it("runs the backend health agent as a systemd service: a frozen backend is marked down in the live config, and back after SIGCONT", async () => {
        await heldSockets();
        const service = await twin.ssh("systemctl is-active wss-edge-backend-health; systemctl is-enabled wss-edge-backend-health");
        assert.deepEqual(service.stdout.trim().split("\n"), ["active", "enabled"], service.stderr);
        const frozen = stack.outputs.backends[1];
        const port = frozen.address.split(":")[1];
        const marked = (state: "down" | "up") => async () => {
            const config = (await twin.ssh("sudo cat /etc/wss-edge/current/nginx.conf")).stdout;
            return new RegExp(`server ${twin.hostAddress.replace(/\./g, "\\.")}:${port} [^;\n]*${state === "down" ? " down" : "s"};`).test(
                config,
            );
        };
        process.kill(frozen.pid, "SIGSTOP");
        try {
            await waitUntil(60000, marked("down"), `the twin's agent did not mark ${frozen.name} down`);
        } finally {
            process.kill(frozen.pid, "SIGCONT");
        }
        await waitUntil(60000, marked("up"), `the twin's agent did not bring ${frozen.name} back`);
        const journal = await twin.ssh("sudo journalctl -u wss-edge-backend-health --no-pager -o cat");
        assert.match(journal.stdout, new RegExp(`:${port} marked down after 2 failed checks`));
        assert.match(journal.stdout, new RegExp(`:${port} is back after 2 good checks`));
        assert.equal(held.filter((s) => s.socket.readyState !== WebSocket.OPEN && s.hello.backend !== frozen.name).length, 0);
    });

    it("comes back serving the current release after a reboot from inside, without running its user data again", async () => {
        await firstDeploy();
        await deployToTwin(twin, stack, twinPlan(stack, { idleTimeoutSeconds: "180" }));
        // A user data edited in place (on EC2: modify-instance-attribute while stopped) is not run again.
        const edited = await twin.ssh(
            "sudo sed -i 's|^runcmd:|runcmd:\\n  - [touch, /var/tmp/edited-user-data-ran]|' /var/lib/cloud/seed/nocloud/user-data",
        );
        assert.equal(edited.code, 0, edited.stderr);
        await Promise.all(held.splice(0).map((s) => close(s.socket)));
        // Rebooted from inside, as an operator's `sudo reboot` on the VM: it comes back by itself.
        const [before] = runningTwinPids(`wss-twin-${twin.options.name}`);
        await twin.ssh("sudo systemctl reboot");
        await waitUntil(
            120000,
            () => (runningTwinPids(`wss-twin-${twin.options.name}`)[0] ?? before) !== before,
            "the twin did not reboot",
        );
        await twin.waitForSsh();
        await waitForNginx(twin);
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "after a reboot")).toString(), "after a reboot");
        await close(session.socket);
        assert.match(
            (await twin.ssh("sudo cat /etc/wss-edge/current/nginx.conf")).stdout,
            /proxy_read_timeout 180s;/,
            "the release deployed before the reboot",
        );
        assert.equal(
            (await twin.ssh("test -e /var/tmp/edited-user-data-ran")).code,
            1,
            "cloud-init ran the edited user data on the same instance",
        );
    });
});

describe("twins by name", twinRuns, async () => {
    if (skip) return;
    const twin = await twinOf("named", 14, "i-twin-named");
    await twin.waitForSsh();

    it("refuses a second twin of a running twin's name, and touches nothing of the first", async () => {
        await assert.rejects(
            bootProxyTwin({ name: "named", subnet: 15, workDir, instanceId: "i-twin-second" }),
            /a twin named "named" is running \(systemd-nspawn pid \d+\)/,
        );
        assert.equal((await twin.ssh("true")).code, 0, "the first still answers with its own keys");
    });

    it("npm run vm-twin -- down stops a twin a killed up left booted, and removes its disk and network", async () => {
        // What `up` leaves when it is killed: the twin named "proxy" booted, in the CLI's folder, on its subnet.
        const left = await bootProxyTwin({
            name: "proxy",
            subnet: 1,
            workDir: "/var/tmp/wss-edge-vm-twin/instances",
            instanceId: "i-twin-left",
        });
        after(() => left.destroy());
        assert.equal(runningTwinPids("wss-twin-proxy").length, 1);
        const down = await run(process.execPath, ["--import", "tsx", "twin/cli.ts", "down"], { cwd: join(__dirname, "..") });
        assert.match(down.stdout, /vm twin: removed/);
        assert.deepEqual(runningTwinPids("wss-twin-proxy"), [], "its systemd-nspawn is gone");
        const namespaces = await run("ip", ["netns", "list"]);
        assert.doesNotMatch(namespaces.stdout, /wss-twin-proxy/);
    });
});

describe("a replaced proxy VM (new user data, a lost instance)", twinRuns, async () => {
    if (skip) return;
    const twin = await twinOf("second", 12, "i-twin-replacement");
    const stack = await backendsFor(twin);

    it("boots a new instance from the user data and is deployed to like the first", async () => {
        await twin.waitForSsh();
        await gateBackends(twin, stack);
        assert.match(await deployToTwin(twin, stack, twinPlan(stack)), /is live \(previous: none\)/);
        const session = await connectThrough(twin, stack);
        assert.equal((await echo(session.socket, "on the new VM")).toString(), "on the new VM");
        await close(session.socket);
    });
});

describe("a first boot that fails", twinRuns, async () => {
    if (skip) return;
    // The stack's own first-boot script, and then a step that fails, as a full disk or a
    // missing package would make it.
    const twin = await twinOf("failed", 13, "i-twin-failed", (hostKey) =>
        renderCloudConfig({
            purpose: "wss-edge proxy whose first boot fails",
            hostKey,
            files: [{ path: "/usr/local/sbin/wss-edge-first-boot", permissions: "0755", content: proxyFirstBootScript }],
            runcmd: [["/usr/local/sbin/wss-edge-first-boot"], ["sh", "-c", "echo 'E: Unable to locate package nginx-bogus' >&2; exit 100"]],
        }),
    );
    const stack = await backendsFor(twin);

    it("fails the deploy with cloud-init's own account of it, not a later error", async () => {
        await twin.waitForSsh();
        await assert.rejects(deployToTwin(twin, stack, twinPlan(stack)), (error: Error) => {
            assert.ok(error instanceof TwinDeployError, String(error));
            assert.match(error.result.stderr, /wss-edge: first boot of wss-edge-proxy failed \(cloud-init status exit 1\)/);
            assert.match(error.result.stderr, /status: error/);
            assert.match(error.result.stderr, /E: Unable to locate package nginx-bogus/, "the failing step's own output");
            assert.doesNotMatch(error.result.stderr, /deploy-edge-config/, "the deploy script never ran");
            return true;
        });
    });
});

describe("user data cloud-init cannot read", twinRuns, async () => {
    if (skip) return;
    const twin = await twinOf(
        "badyaml",
        17,
        "i-twin-badyaml",
        () => "#cloud-config\nwrite_files:\n  - path: /etc/x\n    content: [unclosed\n",
    );

    it("fails the wait for the VM at once with cloud-init's own warning, not after the SSH timeout", async () => {
        await assert.rejects(twin.waitForSsh(), (error: Error) => {
            assert.match(error.message, /first boot finished without the user data's host key; cloud-init said:/);
            assert.match(error.message, /Failed loading yaml blob\. Invalid format at line 4/);
            return true;
        });
    });
});

/** `make` run once, by whichever caller comes first; every caller gets its result. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
    let made: Promise<T> | undefined;
    return () => {
        made ??= make();
        return made;
    };
}

/** NGINX starts after the twin's boot; a reboot's clients wait for it like a load balancer's health check. */
async function waitForNginx(twin: VmTwin): Promise<void> {
    for (let i = 0; i < 60; i++) {
        if ((await twin.ssh("systemctl is-active --quiet nginx")).code === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`nginx did not come back after the reboot:\n${(await twin.ssh("sudo systemctl status nginx --no-pager")).stdout}`);
}
