/**
 * A host twin of the proxy VM on this machine: the cached Debian 12 tree booted by
 * systemd-nspawn with systemd as PID 1, in a network namespace of its own with an address of its
 * own, fed the stack's own user data through cloud-init's NoCloud seed. Nothing listens on it for
 * the deploy: as on AWS, where Systems Manager's agent runs the stack's command documents on the
 * VM, the twin's agent stand-in (`runDocument`) runs a document's script as root inside the
 * twin, and the VM fetches the release itself from the release store's stand-in.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, type Dirent, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type CommandDocument, documentScript } from "../host/releaseChannel";
import { childPids, commandLine, sleep, terminate, waitUntil } from "../local/processes";

const run = promisify(execFile);

/**
 * This machine's address on every twin's link besides its own 10.213.<subnet>.1: what all twins
 * reach alike. The release store's stand-in listens here, as every VM of a region reaches the
 * one S3 endpoint, so one document (which names the store's endpoint) runs on any twin; and
 * backends that several twins front (the proxies of one group) listen here too.
 */
export const sharedHostAddress = "10.213.0.1";

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
    /**
     * The instance role's stand-in: the AWS CLI's credentials file, written to
     * /root/.aws/credentials before first boot (on EC2 the CLI gets the role's keys from the
     * metadata service instead).
     */
    readonly instanceRoleCredentials?: string;
}

export interface RemoteResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
}

/** The PATH Systems Manager's agent runs commands with (systemd's default for services). */
const agentPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class VmTwin {
    private nspawn: ChildProcess | undefined;
    private mounted = false;
    private networkUp = false;
    private commands = 0;

    constructor(readonly options: VmTwinOptions) {
        if (!/^[a-z0-9-]{1,12}$/.test(options.name))
            throw new Error(`vm twin: name ${JSON.stringify(options.name)} must be 1–12 of a-z, 0-9, -`);
        if (!(options.subnet >= 1 && options.subnet <= 250)) throw new Error("vm twin: subnet must be 1 to 250");
    }

    /** This machine's side of the twin's link: backends the twin reaches listen here. */
    get hostAddress(): string {
        return `10.213.${this.options.subnet}.1`;
    }
    /** The twin's own address, where its NGINX listens. */
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
     * First boot: `prepare`, then systemd. Refused while a twin of the same name runs (what a
     * killed run left is removed).
     */
    async create(): Promise<void> {
        await this.prepare();
        await this.start();
    }

    /**
     * The instance before its first boot: a disk of its own over the cached tree, the NoCloud
     * seed and the instance role's stand-in, and its network (this machine's addresses on its
     * link exist from here on). `start` boots it.
     */
    async prepare(): Promise<void> {
        refuseIfTwinRunning(this.options.name);
        await this.removeLeftovers();
        await mkdir(join(this.dir, "upper"), { recursive: true });
        await mkdir(join(this.dir, "work"), { recursive: true });
        await mkdir(this.merged, { recursive: true });
        await this.mount();
        const seed = join(this.merged, "var", "lib", "cloud", "seed", "nocloud");
        await mkdir(seed, { recursive: true });
        await writeFile(join(seed, "user-data"), this.options.userData);
        // No key pair: the stack's VMs are reached through Systems Manager only.
        await writeFile(
            join(seed, "meta-data"),
            [`instance-id: ${this.options.instanceId}`, "local-hostname: wss-edge-proxy", ""].join("\n"),
        );
        if (this.options.instanceRoleCredentials !== undefined) {
            await mkdir(join(this.merged, "root", ".aws"), { recursive: true, mode: 0o700 });
            await writeFile(join(this.merged, "root", ".aws", "credentials"), this.options.instanceRoleCredentials, { mode: 0o600 });
        }
        await this.bringUpNetwork();
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
        // The shared address too (other twins' links may carry it as well): it goes with the link.
        await run("ip", ["addr", "add", `${sharedHostAddress}/32`, "dev", this.hostVeth]);
        await run("ip", ["link", "set", this.hostVeth, "up"]);
        await run("ip", ["-n", this.namespace, "addr", "add", `${this.address}/24`, "dev", "eth0"]);
        await run("ip", ["-n", this.namespace, "link", "set", "eth0", "up"]);
        await run("ip", ["-n", this.namespace, "link", "set", "lo", "up"]);
        await run("ip", ["-n", this.namespace, "route", "add", `${sharedHostAddress}/32`, "dev", "eth0"]);
    }

    /** Boots systemd in the twin (the first boot, or a boot after `stop`). */
    async start(): Promise<void> {
        await this.mount();
        await this.bringUpNetwork();
        const log = openSync(this.consoleLog, "a");
        // nspawn makes the container's cgroups under its caller's: each twin's caller a cgroup of its
        // own, or all twins would share one tree, and one twin's systemd would find (and fail to
        // kill) the processes of the others in its units' cgroups.
        const cgroups = twinCgroups(this.namespace);
        for (const dir of cgroups) mkdirSync(dir, { recursive: true });
        this.nspawn = spawn(
            "sh",
            [
                "-c",
                'for dir in $WSS_TWIN_CGROUPS; do echo $$ > "$dir/cgroup.procs" || exit 1; done; exec systemd-nspawn "$@"',
                "sh",
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
            {
                stdio: ["ignore", log, log],
                env: { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: "yes", WSS_TWIN_CGROUPS: cgroups.join(" ") },
            },
        );
        closeSync(log);
        const booted = this.nspawn;
        // A reboot from inside (`systemctl reboot`) ends systemd-nspawn with 133, which systemd's own
        // unit for containers restarts on (RestartForceExitStatus=133 in systemd-nspawn@.service):
        // boot again, as an EC2 instance comes back from a reboot.
        booted.once("exit", (code) => {
            if (code === rebootExitCode && this.nspawn === booted) void this.start();
        });
        // Running once the wrapper has become systemd-nspawn (in its cgroups): what `runningTwinPids` sees.
        await waitUntil(
            10000,
            () => booted.exitCode !== null || commandLine(booted.pid ?? 0).startsWith("systemd-nspawn "),
            `vm twin: systemd-nspawn did not start for ${this.options.name}`,
        );
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
        removeTwinCgroups(this.namespace);
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
        removeTwinCgroups(this.namespace);
        await rm(this.dir, { recursive: true, force: true });
    }

    /**
     * The twin's PID 1 (its systemd), or undefined while it is not booted: the child of the outer
     * systemd-nspawn once that child has become init.
     */
    initPid(): number | undefined {
        const [outer] = runningTwinPids(this.namespace);
        if (outer === undefined) return undefined;
        return childPids(outer).find((pid) => {
            try {
                return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "systemd";
            } catch {
                return false;
            }
        });
    }

    /** Whether the twin's systemd runs: what Systems Manager's stand-in reports as the agent being online. */
    get running(): boolean {
        return this.initPid() !== undefined;
    }

    /**
     * Runs `argv` as root inside the twin (all of its namespaces: its file system, network,
     * processes and systemd), with the environment Systems Manager's agent gives its commands.
     * Killed with everything it started there after `timeoutMs`.
     */
    private inside(
        argv: readonly string[],
        options: { stdin?: string; cwd?: string; timeoutMs: number; signal?: AbortSignal },
    ): Promise<RemoteResult> {
        const pid = this.initPid();
        if (pid === undefined) return Promise.reject(new Error(`vm twin: ${this.options.name} is not running`));
        return new Promise((done, fail) => {
            const child = spawn(
                "nsenter",
                [
                    `--target=${pid}`,
                    "--all",
                    "--root",
                    "--",
                    "/usr/bin/env",
                    "-i",
                    `--chdir=${options.cwd ?? "/"}`,
                    `PATH=${agentPath}`,
                    "LANG=C.UTF-8",
                    ...argv,
                ],
                { stdio: ["pipe", "pipe", "pipe"], detached: true },
            );
            let stdout = "";
            let stderr = "";
            const timer = setTimeout(() => {
                stderr += `\nvm twin: killed after ${options.timeoutMs / 1000} s`;
                killGroup(child);
            }, options.timeoutMs);
            const abort = () => {
                stderr += "\nvm twin: cancelled";
                killGroup(child);
            };
            if (options.signal?.aborted) abort();
            options.signal?.addEventListener("abort", abort, { once: true });
            child.stdout.on("data", (d) => (stdout += d));
            child.stderr.on("data", (d) => (stderr += d));
            child.on("error", (error) => {
                clearTimeout(timer);
                fail(error);
            });
            child.on("close", (code, killedBy) => {
                clearTimeout(timer);
                options.signal?.removeEventListener("abort", abort);
                // A shell's own account of a killed command: 128 + the signal (SIGKILL: 137).
                done({ code: code ?? (killedBy ? 137 : -1), stdout, stderr });
            });
            child.stdin.on("error", () => undefined);
            child.stdin.end(options.stdin ?? "");
        });
    }

    /** Runs `command` with bash as root in the twin, `stdin` on its standard input: an operator's look inside. */
    exec(command: string, stdin = "", timeoutMs = 120000): Promise<RemoteResult> {
        return this.inside(["bash", "-c", command], { stdin, timeoutMs });
    }

    /**
     * The stand-in for Systems Manager's agent: runs a command of `document` with `parameters` as
     * the agent does — the document's script (`documentScript`: parameters checked against their
     * patterns, then substituted) written to `_script.sh` in the command's orchestration folder
     * and run as root by `sh -c` (Debian's dash), in that folder, bounded by the step's
     * timeoutSeconds (or until `signal` aborts it). Throws, running nothing, when a parameter is
     * refused.
     */
    async runDocument(
        document: CommandDocument,
        parameters: Readonly<Record<string, string>>,
        options: { readonly commandId?: string; readonly signal?: AbortSignal } = {},
    ): Promise<RemoteResult> {
        const commandId = options.commandId ?? `twin-${Date.now().toString(16)}-${++this.commands}`;
        const script = documentScript(document, parameters);
        const [step] = document.mainSteps;
        const folder = join("/var/lib/amazon/ssm", this.options.instanceId, "document", "orchestration", commandId, step.name);
        await mkdir(join(this.merged, folder), { recursive: true, mode: 0o700 });
        await writeFile(join(this.merged, folder, "_script.sh"), `${script}\n`, { mode: 0o700 });
        await chmod(join(this.merged, folder, "_script.sh"), 0o700);
        return this.inside(["sh", "-c", join(folder, "_script.sh")], {
            cwd: folder,
            timeoutMs: Number(step.inputs.timeoutSeconds) * 1000,
            signal: options.signal,
        });
    }

    /**
     * Waits until cloud-init has finished this boot, and resolves with how it ended ("done", or
     * "error": then the first document run fails with cloud-init's own account, as on AWS). Fails
     * at once when the twin stopped, or when first boot finished without running the user data's
     * commands (cloud-init 22.4 logs a user data it cannot read as a warning and calls the boot
     * done: waiting longer cannot help), with cloud-init's own warnings; after `timeoutMs`, with
     * the console's last lines. The bound is a real VM's: a first boot that runs apt takes
     * minutes on a busy host.
     */
    async waitForBoot(timeoutMs = 300000): Promise<"done" | "error"> {
        const deadline = Date.now() + timeoutMs;
        let last = "";
        for (;;) {
            if (this.nspawn && this.nspawn.exitCode !== null)
                throw new Error(`vm twin: the twin stopped while booting:\n${this.consoleTail()}`);
            const pid = this.initPid();
            // /run/cloud-init/result.json: written when cloud-init finishes, on the twin's /run (this boot's only).
            if (pid !== undefined && lstatExists(`/proc/${pid}/root/run/cloud-init/result.json`)) {
                const status = await this.exec("cloud-init status --long");
                last = `${status.stdout}${status.stderr}`.trim();
                const state = /^status: (\w+)/m.exec(status.stdout)?.[1];
                if (state === "done" || state === "error") {
                    this.failIfFirstBootIgnoredUserData();
                    return state;
                }
            }
            if (Date.now() > deadline)
                throw new Error(
                    `vm twin: ${this.options.name} did not finish first boot within ${timeoutMs / 1000} s\nlast status: ${last || "(none)"}\n${this.consoleTail()}`,
                );
            await sleep(1000);
        }
    }

    /**
     * cloud-init finished without the user data's commands: it never read the user data (it
     * writes the runcmd script of every user data here, which always has commands). Fails with
     * cloud-init's own warnings.
     */
    private failIfFirstBootIgnoredUserData(): void {
        // (instances/<id>, not the `instance` symlink: it is absolute, and would resolve on this machine.)
        if (existsSync(join(this.merged, "var", "lib", "cloud", "instances", this.options.instanceId, "scripts", "runcmd"))) return;
        let log = "";
        try {
            log = readFileSync(join(this.merged, "var", "log", "cloud-init.log"), "utf8");
        } catch {
            // no log: say what is known
        }
        const warnings = log.split("\n").filter((line) => /\[(WARNING|ERROR)\]/.test(line));
        throw new Error(
            `vm twin: first boot finished without running the user data's commands; cloud-init said:\n${warnings.join("\n") || "(no warnings in /var/log/cloud-init.log)"}`,
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

/** Whether `path` exists itself (a symlink into the twin's tree counts, wherever it points from here). */
function lstatExists(path: string): boolean {
    try {
        lstatSync(path);
        return true;
    } catch {
        return false;
    }
}

/** SIGKILL to a detached child's process group: nsenter, and what it started inside the twin. */
function killGroup(child: ChildProcess): void {
    try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
    } catch {
        // gone already
    }
}

/** Throws when a twin named `name` runs now: nothing of it (disk, network) may be touched. */
export function refuseIfTwinRunning(name: string): void {
    const running = runningTwinPids(`wss-twin-${name}`);
    if (running.length > 0)
        throw new Error(
            `vm twin: a twin named ${JSON.stringify(name)} is running (systemd-nspawn pid ${running.join(", ")}); stop it first (Ctrl-C in its terminal, or npm run vm-twin -- down)`,
        );
}

/**
 * The cgroups a twin's systemd-nspawn is started in, one per hierarchy systemd uses (the named v1
 * `systemd` one and the unified one on a hybrid host; the unified one alone on a cgroup v2 host),
 * each under this process's own cgroup there.
 */
export function twinCgroups(machine: string): string[] {
    const own = readFileSync("/proc/self/cgroup", "utf8");
    const pathIn = (pattern: RegExp) => pattern.exec(own)?.[1] ?? "/";
    const hierarchies = [
        { mount: "/sys/fs/cgroup/systemd", path: pathIn(/^\d+:name=systemd:(.*)$/m) },
        { mount: "/sys/fs/cgroup/unified", path: pathIn(/^0::(.*)$/m) },
        { mount: "/sys/fs/cgroup", path: pathIn(/^0::(.*)$/m) },
    ];
    return hierarchies.filter((h) => existsSync(join(h.mount, "cgroup.procs"))).map((h) => join(h.mount, h.path, machine));
}

/** Removes a stopped twin's cgroups, deepest first (a cgroup with a process left in it stays). */
export function removeTwinCgroups(machine: string): void {
    const remove = (dir: string) => {
        let entries: Dirent[];
        try {
            entries = readdirSync(dir, { withFileTypes: true });
        } catch {
            return;
        }
        for (const entry of entries) if (entry.isDirectory()) remove(join(dir, entry.name));
        try {
            rmdirSync(dir);
        } catch {
            // busy, or gone
        }
    };
    for (const dir of twinCgroups(machine)) remove(dir);
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
