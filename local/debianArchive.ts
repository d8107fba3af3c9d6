/**
 * Packages of Debian 13 (trixie), taken from Debian's archive and unpacked (not installed) into a
 * folder of this machine's, once per set: Debian 13's Pebble for the ACME tests, Debian 13's NGINX
 * and OpenSSL for the proxy platform's measures. Checked as apt checks them: the release file
 * (InRelease) by its signature against Debian's archive keyring, the package index by the hash the
 * release file gives, and each package by the hash the index gives.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

const mirror = "http://deb.debian.org/debian";
const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";

/** The folder `packages` are unpacked in (`name` names the set), fetched and checked on first use. */
export function trixiePackages(name: string, packages: readonly string[]): string {
    const root = `/var/tmp/wss-edge-trixie-${name}`;
    if (existsSync(root)) return root;
    const work = mkdtempSync(`${root}-`);
    try {
        const fetch = (path: string, file: string) => {
            execFileSync("curl", ["-fsS", "--max-time", "300", "-o", join(work, file), `${mirror}/${path}`]);
            return join(work, file);
        };
        const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
        const architecture = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();

        const release = fetch("dists/trixie/InRelease", "InRelease");
        // gpgv exits non-zero unless a key of the keyring signed it.
        execFileSync("gpgv", ["--keyring", keyring, "--output", join(work, "Release"), release], { stdio: ["ignore", "ignore", "pipe"] });
        const indexPath = `main/binary-${architecture}/Packages.xz`;
        const indexHash = new RegExp(`^ ([0-9a-f]{64}) +\\d+ ${indexPath.replace(/\./g, "\\.")}$`, "m").exec(
            readFileSync(join(work, "Release"), "utf8").split("SHA256:")[1] ?? "",
        )?.[1];
        const index = fetch(`dists/trixie/${indexPath}`, "Packages.xz");
        if (!indexHash || sha256(index) !== indexHash) throw new Error(`Debian 13's ${indexPath} is not the one its signed release names`);
        const stanzas = execFileSync("xz", ["-dc", index], { encoding: "utf8", maxBuffer: 512 * 1024 * 1024 }).split("\n\n");

        for (const pkg of packages) {
            const stanza = stanzas.find((entry) => entry.startsWith(`Package: ${pkg}\n`));
            const filename = stanza && /^Filename: (\S+)$/m.exec(stanza)?.[1];
            const packageHash = stanza && /^SHA256: ([0-9a-f]{64})$/m.exec(stanza)?.[1];
            if (!filename || !packageHash) throw new Error(`Debian 13's package index names no ${pkg} for ${architecture}`);
            const deb = fetch(filename, `${pkg}.deb`);
            if (sha256(deb) !== packageHash) throw new Error(`${filename} is not the package Debian 13's index names`);
            execFileSync("dpkg-deb", ["-x", deb, join(work, "root")]);
        }
        // Renamed into place whole: a run that stops half-way leaves nothing a later one would trust.
        renameSync(join(work, "root"), root);
    } finally {
        rmSync(work, { recursive: true, force: true });
    }
    return root;
}
