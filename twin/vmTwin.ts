/**
 * A host twin of the proxy VM on this machine: the cached Debian 12 tree booted by
 * systemd-nspawn with systemd as PID 1, in a network namespace of its own with an address of its
 * own, fed the stack's own user data through cloud-init's NoCloud seed, and reached over real SSH
 * as `admin` with the host key pinned — as the stack's deploy reaches the VM.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { proxyHost } from "../host/proxyHost";
import { commandLine, sleep, terminate, waitUntil } from "../local/processes";

const run = promisify(execFile);

/** An SSH key pair in OpenSSH format, as @pulumi/tls issues them for the stack. */
export interface SshKeyPair {
    readonly privateKeyOpenssh: string;
    readonly publicKeyOpenssh: string;
}

/** A fresh ED25519 key pair from ssh-keygen. */
export async function newSshKeyPair(dir: string, name: string): Promise<SshKeyPair & { readonly privateKeyPath: string }> {
    const path = join(dir, name);
    await rm(path, { force: true });
    await rm(`${path}.pub`, { force: true });
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path]);
    return {
        privateKeyOpenssh: await readFile(path, "utf8"),
        publicKeyOpenssh: (await readFile(`${path}.pub`, "utf8")).trim(),
        privateKeyPath: path,
    };
}

export interface VmTwinOptions {
    /** Short name: the network namespace, the machine, the instance's folder. */
    readonly name: string;
    readonly rootfs: string;
    /** Where the instance keeps its overlay (its disk) and logs. */
    readonly workDir: string;
    /** 1–250: the twin's /30-like pair is 10.213.<subnet>.1 (this machine) and .2 (the twin). */
    readonly subnet: number;
    /** The user data, exactly as EC2 would get it. */
    readonly userData: string;
    /** EC2's instance ID: cloud-init runs user data once per instance ID. */
    readonly instanceId: string;
    /** The key pair's public key, as EC2's metadata service offers it. */
    readonly authorizedKey: string;
    /** The host key the deploy pins: the one the user data presets. */
    readonly hostPublicKey: string;
    /** The deploy's private key file. */
    readonly deployKeyPath: string;
}

export interface RemoteResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
}

export class VmTwin {
    private nspawn: ChildProcess | undefined;
    private mounted = false;
    private networkUp = false;

    constructor(readonly options: VmTwinOptions) {
        if (!/^[a-z0-9-]{1,12}$/.test(options.name))
            throw new Error(`vm twin: name ${JSON.stringify(options.name)} must be 1–12 of a-z, 0-9, -`);
        if (!(options.subnet >= 1 && options.subnet <= 250)) throw new Error("vm twin: subnet must be 1 to 250");
    }

    /** This machine's side of the twin's link: backends the twin reaches listen here. */
    get hostAddress(): string {
        return `10.213.${this.options.subnet}.1`;
    }
    /** The twin's own address, where its NGINX and sshd listen. */
    get address(): string {
        return `10.213.${this.options.subnet}.2`;
    }
    private get namespace(): string {
        return `wss-twin-${this.options.name}`;
    }
    private get hostVeth(): string {
        return `wt-${this.options.name}`.slice(0, 15);
    }
    private get dir(): string {
        return join(this.options.workDir, this.options.name);
    }
    private get merged(): string {
        return join(this.dir, "merged");
    }
    get consoleLog(): string {
        return join(this.dir, "console.log");
    }

    /**
     * First boot: a disk of its own over the cached tree, the NoCloud seed, the network, then
     * systemd. Refused while a twin of the same name runs (what a killed run left is removed).
     */
    async create(): Promise<void> {
        refuseIfTwinRunning(this.options.name);
        await this.removeLeftovers();
        await mkdir(join(this.dir, "upper"), { recursive: true });
        await mkdir(join(this.dir, "work"), { recursive: true });
        await mkdir(this.merged, { recursive: true });
        await this.mount();
        const seed = join(this.merged, "var", "lib", "cloud", "seed", "nocloud");
        await mkdir(seed, { recursive: true });
        await writeFile(join(seed, "user-data"), this.options.userData);
        await writeFile(
            join(seed, "meta-data"),
            [
                `instance-id: ${this.options.instanceId}`,
                "local-hostname: wss-edge-proxy",
                "public-keys:",
                `  - ${this.options.authorizedKey.trim()}`,
                "",
            ].join("\n"),
        );
        await this.start();
    }

    private async mount(): Promise<void> {
        if (this.mounted) return;
        const { rootfs } = this.options;
        await run("mount", [
            "-t",
            "overlay",
            "overlay",
            "-o",
            `lowerdir=${rootfs},upperdir=${join(this.dir, "upper")},workdir=${join(this.dir, "work")}`,
            this.merged,
        ]);
        this.mounted = true;
    }

    private async bringUpNetwork(): Promise<void> {
        if (this.networkUp) return;
        const { stdout } = await run("ip", ["-o", "-4", "addr", "show"]);
        if (stdout.includes(` ${this.hostAddress}/`))
            throw new Error(`vm twin: ${this.hostAddress} is already on this machine: another twin uses subnet ${this.options.subnet}`);
        await run("ip", ["netns", "add", this.namespace]);
        this.networkUp = true;
        await run("ip", ["link", "add", this.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", this.namespace]);
        await run("ip", ["addr", "add", `${this.hostAddress}/24`, "dev", this.hostVeth]);
        await run("ip", ["link", "set", this.hostVeth, "up"]);
        await run("ip", ["-n", this.namespace, "addr", "add", `${this.address}/24`, "dev", "eth0"]);
        await run("ip", ["-n", this.namespace, "link", "set", "eth0", "up"]);
        await run("ip", ["-n", this.namespace, "link", "set", "lo", "up"]);
    }

    /** Boots systemd in the twin (the first boot, or a boot after `stop`). */
    async start(): Promise<void> {
        await this.mount();
        await this.bringUpNetwork();
        const log = openSync(this.consoleLog, "a");
        this.nspawn = spawn(
            "systemd-nspawn",
            [
                "--boot",
                `--directory=${this.merged}`,
                `--network-namespace-path=/run/netns/${this.namespace}`,
                // This machine's PID 1 is not systemd: without these nspawn stops at "Failed to open system bus".
                "--register=no",
                "--keep-unit",
                `--machine=${this.namespace}`,
                "--console=read-only",
            ],
            // /proc/sys writable, so the user data's network sysctls take effect in the twin's own namespace.
            { stdio: ["ignore", log, log], env: { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: "yes" } },
        );
        closeSync(log);
        const booted = this.nspawn;
        // A reboot from inside (`systemctl reboot`) ends systemd-nspawn with 133, which systemd's own
        // unit for containers restarts on (RestartForceExitStatus=133 in systemd-nspawn@.service):
        // boot again, as an EC2 instance comes back from a reboot.
        booted.once("exit", (code) => {
            if (code === rebootExitCode && this.nspawn === booted) void this.start();
        });
    }

    /** A clean shutdown, as `shutdown -h` on the VM; the disk stays for the next `start`. */
    async stop(): Promise<void> {
        const nspawn = this.nspawn;
        this.nspawn = undefined;
        // SIGTERM asks the twin's systemd to power off; it gets 60 s before it is killed.
        if (nspawn) await terminate(nspawn, "SIGTERM", 60000);
    }

    /** What a twin of this name left when its run was killed: its mount, network and folder. */
    private async removeLeftovers(): Promise<void> {
        await run("umount", ["-l", this.merged]).catch(() => undefined);
        await run("ip", ["netns", "delete", this.namespace]).catch(() => undefined);
        await run("ip", ["link", "delete", this.hostVeth]).catch(() => undefined);
        await rm(this.dir, { recursive: true, force: true });
    }

    /** Stops the twin and removes its disk and network: nothing of it is left. */
    async destroy(): Promise<void> {
        await this.stop();
        if (this.mounted) {
            // (Unmounted already when `vm-twin down` removed it from outside.)
            await run("umount", [this.merged]).catch(() => run("umount", ["-l", this.merged]).catch(() => undefined));
            this.mounted = false;
        }
        if (this.networkUp) {
            await run("ip", ["netns", "delete", this.namespace]).catch(() => undefined);
            await run("ip", ["link", "delete", this.hostVeth]).catch(() => undefined);
            this.networkUp = false;
        }
        await rm(this.dir, { recursive: true, force: true });
    }

    private sshOptions(): string[] {
        const knownHosts = join(this.dir, "known_hosts");
        // The pinned host key, the only one accepted; no other file is consulted or written.
        return [
            "-o",
            `UserKnownHostsFile=${knownHosts}`,
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            `HostKeyAlgorithms=${this.options.hostPublicKey.split(" ")[0]}`,
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            "-i",
            this.options.deployKeyPath,
        ];
    }

    private async writeKnownHosts(): Promise<void> {
        const [type, key] = this.options.hostPublicKey.trim().split(/\s+/);
        await writeFile(join(this.dir, "known_hosts"), `${this.address} ${type} ${key}\n`);
    }

    /** Runs `command` as `admin` over SSH with `stdin`, as the stack's remote commands do. */
    async ssh(command: string, stdin = ""): Promise<RemoteResult> {
        await this.writeKnownHosts();
        return new Promise((done, fail) => {
            const child = spawn("ssh", [...this.sshOptions(), `${proxyHost.user}@${this.address}`, command], {
                stdio: ["pipe", "pipe", "pipe"],
            });
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (d) => (stdout += d));
            child.stderr.on("data", (d) => (stderr += d));
            child.on("error", fail);
            child.on("close", (code) => done({ code: code ?? -1, stdout, stderr }));
            child.stdin.on("error", () => undefined);
            child.stdin.end(stdin);
        });
    }

    /** Copies a file to `remotePath` over SFTP, creating its folder, as CopyToRemote does. */
    async copy(localPath: string, remotePath: string): Promise<void> {
        await this.writeKnownHosts();
        const folder = remotePath.slice(0, remotePath.lastIndexOf("/"));
        const batch = join(this.dir, "sftp-batch");
        await writeFile(batch, `-mkdir ${folder}\nput ${localPath} ${remotePath}\n`);
        await run("sftp", [...this.sshOptions(), "-b", batch, `${proxyHost.user}@${this.address}`]);
    }

    /**
     * Waits until sshd answers with the pinned key and takes the deploy key; fails with the last
     * probe's answer and the console's last lines. The bound is a real VM's: a first boot that
     * runs apt takes minutes on a busy host, and the stack's deploy waits as long.
     */
    async waitForSsh(timeoutMs = 300000): Promise<void> {
        let lastAnswer = "";
        await waitUntil(
            timeoutMs,
            async () => {
                if (this.nspawn && this.nspawn.exitCode !== null)
                    throw new Error(`vm twin: the twin stopped while booting:\n${this.consoleTail()}`);
                const probe = await this.ssh("true");
                lastAnswer = probe.stderr.trim();
                if (probe.code !== 0 && /REMOTE HOST IDENTIFICATION HAS CHANGED/.test(lastAnswer)) this.failIfFirstBootIgnoredUserData();
                if (probe.code !== 0) await sleep(500);
                return probe.code === 0;
            },
            `vm twin: ${this.address} did not answer SSH with its pinned host key`,
        ).catch((error: Error) => {
            throw new Error(`${error.message}\nlast answer: ${lastAnswer || "(none)"}\n${this.consoleTail()}`);
        });
    }

    /**
     * sshd answers with a key other than the pinned one: if cloud-init has finished, the user data
     * never gave it its keys (cloud-init 22.4 logs a user data it cannot read as a warning, calls
     * the boot done, and makes random host keys), and waiting longer cannot help. Fails with
     * cloud-init's own warnings.
     */
    private failIfFirstBootIgnoredUserData(): void {
        if (!existsSync(join(this.merged, "var", "lib", "cloud", "data", "result.json"))) return;
        let log = "";
        try {
            log = readFileSync(join(this.merged, "var", "log", "cloud-init.log"), "utf8");
        } catch {
            // no log: say what is known
        }
        const warnings = log.split("\n").filter((line) => /\[(WARNING|ERROR)\]/.test(line));
        throw new Error(
            `vm twin: first boot finished without the user data's host key; cloud-init said:\n${warnings.join("\n") || "(no warnings in /var/log/cloud-init.log)"}`,
        );
    }

    consoleTail(lines = 30): string {
        try {
            return readFileSync(this.consoleLog, "utf8").trim().split("\n").slice(-lines).join("\n");
        } catch {
            return "(no console output)";
        }
    }
}

/** Throws when a twin named `name` runs now: nothing of it (keys, disk, network) may be touched. */
export function refuseIfTwinRunning(name: string): void {
    const running = runningTwinPids(`wss-twin-${name}`);
    if (running.length > 0)
        throw new Error(
            `vm twin: a twin named ${JSON.stringify(name)} is running (systemd-nspawn pid ${running.join(", ")}); stop it first (Ctrl-C in its terminal, or npm run vm-twin -- down)`,
        );
}

/** systemd-nspawn's exit status when the container asked to reboot. */
const rebootExitCode = 133;

/**
 * The systemd-nspawn process booting the twin whose machine is `machine` (from /proc, so any
 * user's view agrees). Only the outer one: while the twin boots, nspawn's child still shows the
 * same command line until it becomes the twin's init.
 */
export function runningTwinPids(machine: string): number[] {
    const nspawns = readdirSync("/proc")
        .filter((entry) => /^\d+$/.test(entry))
        .map(Number)
        .filter((pid) => {
            const command = commandLine(pid);
            return command.startsWith("systemd-nspawn ") && command.split(" ").includes(`--machine=${machine}`);
        });
    return nspawns.filter((pid) => !nspawns.includes(parentPid(pid)));
}

function parentPid(pid: number): number {
    try {
        return Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
    } catch {
        return 0;
    }
}
