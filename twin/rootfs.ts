/**
 * The VM twin's root file system: Debian 12 (or 13, for proxyPlatform debian-13) as the proxy's AMI has it where it matters here
 * (systemd, cloud-init, OpenSSH, sudo; NGINX and the AWS CLI not yet: the user data installs
 * them), built once per machine with debootstrap and cached, with a package mirror of its own.
 * Everything a twin writes goes to an overlay of its own; this tree is never changed.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, rmSync, statSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { proxyFirstBootScript } from "../host/proxyHost";
import type { ProxyPlatform } from "../settings/settingsTable";

const run = promisify(execFile);

/**
 * The packages: what Debian's cloud image has that the proxy's user data and deploy use.
 * python3-cffi-backend is named because cloud-init's dependencies fail to configure without it
 * in a minbase system.
 */
const packages = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "cloud-init",
    "openssh-server",
    "sudo",
    "python3-cffi-backend",
    "iproute2",
    "ca-certificates",
    "util-linux",
    // cloud-init's locale module sets en_US.UTF-8, as the cloud image has it.
    "locales",
];
/** The Debian suite of each proxy platform. */
const suites: Readonly<Record<ProxyPlatform, string>> = { "debian-12": "bookworm", "debian-13": "trixie" };
const mirror = "http://deb.debian.org/debian";

/**
 * What the user data installs at first boot (its `apt-get install` line, read from the script so
 * the two cannot differ): not installed in the image, as on the AMI, but served to the twin by a
 * mirror of its own in the tree (the twin has no route to Debian's), with what they depend on.
 */
export const userDataPackages = (/apt-get install -y -q ([^\n]+)/.exec(proxyFirstBootScript)?.[1] ?? "").trim().split(/\s+/);
/** Where the twin's mirror lives in the tree, and how apt is pointed at it. */
export const twinMirror = "/var/lib/wss-edge-twin-mirror";

/**
 * What the image gets on top of the packages, as Debian's cloud images set it: cloud-init reads
 * NoCloud (the twin's seed) instead of EC2's metadata service, and creates the default user
 * `admin` with passwordless sudo (nothing logs in as it: the stack reaches its VMs through
 * Systems Manager, which the twin's agent stand-in plays as root).
 */
const cloudImageConfig: Record<string, string> = {
    "etc/cloud/cloud.cfg.d/01_wss_edge_twin.cfg": [
        "# The VM twin: NoCloud stands in for EC2's metadata service; the default user is Debian's",
        "# cloud images' own.",
        "datasource_list: [NoCloud, None]",
        "# The twin's address is set from outside, on its network namespace; EC2's comes by DHCP.",
        "network:",
        "  config: disabled",
        "# The host name resolves through /etc/hosts, as EC2's resolver does for the instance's name.",
        "manage_etc_hosts: true",
        "system_info:",
        "  default_user:",
        "    name: admin",
        '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
        "    groups: [adm, sudo]",
        "    shell: /bin/bash",
        "",
    ].join("\n"),
    // No Debian mirror is reachable from the twin: apt is pointed at the twin's own.
    "etc/apt/sources.list": `deb [trusted=yes] file:${twinMirror} ./\n`,
    // Each instance gets its machine ID at its first boot, as on EC2.
    "etc/machine-id": "",
};

/**
 * Run in the tree (chroot) after the packages: the locale cloud-init sets (en_US.UTF-8) generated,
 * as the cloud image has it; and what the packages' own first start left, which a cloud image has
 * not: host keys, NGINX's default site, cloud-init's record of a boot.
 */
const imageSteps = [
    "sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen && locale-gen",
    "rm -f /etc/ssh/ssh_host_* && rm -rf /var/lib/cloud/* /var/lib/apt/lists/* && apt-get clean",
];

/** Where the cached tree lives: one per package list and image setup, so a change to either builds a new one. */
export function rootfsPath(cacheDir = "/var/tmp/wss-edge-vm-twin", platform: ProxyPlatform = "debian-12"): string {
    const suite = suites[platform];
    const key = createHash("sha256")
        .update(JSON.stringify({ suite, packages, userDataPackages, cloudImageConfig, imageSteps }))
        .digest("hex")
        .slice(0, 12);
    return join(cacheDir, `${suite}-${key}`, "rootfs");
}

/** Builds under way in this process, by path: every twin booting at once waits for the same one. */
const building = new Map<string, Promise<string>>();

/** The cached tree, built first if this machine has none (a minute or two, about 400 MB). */
export function ensureRootfs(
    log: (line: string) => void = () => undefined,
    cacheDir?: string,
    platform: ProxyPlatform = "debian-12",
): Promise<string> {
    const rootfs = rootfsPath(cacheDir, platform);
    if (existsSync(join(rootfs, ".wss-edge-twin-complete"))) return Promise.resolve(rootfs);
    let build = building.get(rootfs);
    if (!build) {
        build = buildRootfs(rootfs, suites[platform], log).finally(() => building.delete(rootfs));
        building.set(rootfs, build);
    }
    return build;
}

/** One build per machine: another process's build is waited for (its lock file), not raced. */
async function buildRootfs(rootfs: string, suite: string, log: (line: string) => void): Promise<string> {
    await mkdir(join(rootfs, ".."), { recursive: true });
    const lock = `${rootfs}.lock`;
    const deadline = Date.now() + 20 * 60 * 1000;
    for (;;) {
        try {
            closeSync(openSync(lock, "wx"));
            break;
        } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
            // A lock older than any build is what a killed build left.
            if (Date.now() - statSync(lock).mtimeMs > 20 * 60 * 1000) rmSync(lock, { force: true });
            if (Date.now() > deadline) throw new Error(`vm twin: another build holds ${lock}`);
            await new Promise((resolve) => setTimeout(resolve, 2000));
        }
        if (existsSync(join(rootfs, ".wss-edge-twin-complete"))) return rootfs;
    }
    try {
        if (existsSync(join(rootfs, ".wss-edge-twin-complete"))) return rootfs;
        const staging = `${rootfs}.building`;
        await rm(staging, { recursive: true, force: true });
        await mkdir(staging, { recursive: true });
        log(`building the twin's root file system with debootstrap (${suite}, once per machine) into ${rootfs}`);
        await run("debootstrap", ["--variant=minbase", `--include=${packages.join(",")}`, suite, staging, mirror], {
            maxBuffer: 64 * 1024 * 1024,
        });
        // The twin's mirror: the user data's packages and what they need beyond the image, fetched
        // now (debootstrap left Debian's mirror in sources.list) and indexed as a flat repository.
        const mirrorDir = join(staging, twinMirror);
        await run(
            "chroot",
            [
                staging,
                "sh",
                "-c",
                `apt-get clean && apt-get update -q && apt-get install --download-only -y -q ${userDataPackages.join(" ")}`,
            ],
            { maxBuffer: 64 * 1024 * 1024 },
        );
        await mkdir(mirrorDir, { recursive: true });
        await run("sh", ["-c", `mv "$1"/var/cache/apt/archives/*.deb "$2"/`, "sh", staging, mirrorDir]);
        const { stdout: index } = await run("dpkg-scanpackages", ["--multiversion", ".", "/dev/null"], {
            cwd: mirrorDir,
            maxBuffer: 64 * 1024 * 1024,
        });
        await writeFile(join(mirrorDir, "Packages"), index);
        for (const [path, content] of Object.entries(cloudImageConfig)) {
            await mkdir(join(staging, path, ".."), { recursive: true });
            await writeFile(join(staging, path), content);
        }
        for (const step of imageSteps) await run("chroot", [staging, "sh", "-c", step]);
        await writeFile(join(staging, ".wss-edge-twin-complete"), `${new Date().toISOString()}\n`);
        await rm(rootfs, { recursive: true, force: true });
        await rename(staging, rootfs);
        return rootfs;
    } finally {
        rmSync(lock, { force: true });
    }
}
