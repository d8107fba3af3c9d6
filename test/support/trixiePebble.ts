/**
 * Debian 13's Pebble (2.6), which offers ACME Renewal Information (RFC 9773) where Debian 12's
 * (2.4) does not: its package's two binaries, taken from Debian's archive and unpacked (not
 * installed) into a folder of this machine's, once. Checked as apt checks them: the release file
 * (InRelease) by its signature against Debian's archive keyring, the package index by the hash
 * the release file gives, and the package by the hash the index gives.
 */

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

const mirror = "http://deb.debian.org/debian";
const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
const cache = "/var/tmp/wss-edge-pebble-trixie";

/** The paths of trixie's `pebble` and `pebble-challtestsrv`, fetched on first use. */
export function trixiePebbleBinaries(): { readonly pebble: string; readonly challtestsrv: string } {
    const binaries = { pebble: join(cache, "usr/bin/pebble"), challtestsrv: join(cache, "usr/bin/pebble-challtestsrv") };
    if (existsSync(binaries.pebble) && existsSync(binaries.challtestsrv)) return binaries;
    const work = mkdtempSync("/var/tmp/wss-edge-pebble-trixie-");
    try {
        const fetch = (path: string, file: string) => {
            execFileSync("curl", ["-fsS", "--max-time", "120", "-o", join(work, file), `${mirror}/${path}`]);
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

        const stanza = execFileSync("xz", ["-dc", index], { encoding: "utf8", maxBuffer: 512 * 1024 * 1024 })
            .split("\n\n")
            .find((entry) => entry.startsWith("Package: pebble\n"));
        const filename = stanza && /^Filename: (\S+)$/m.exec(stanza)?.[1];
        const packageHash = stanza && /^SHA256: ([0-9a-f]{64})$/m.exec(stanza)?.[1];
        if (!filename || !packageHash) throw new Error(`Debian 13's package index names no pebble for ${architecture}`);
        const deb = fetch(filename, "pebble.deb");
        if (sha256(deb) !== packageHash) throw new Error(`${filename} is not the package Debian 13's index names`);

        execFileSync("dpkg-deb", ["-x", deb, join(work, "root")]);
        // Renamed into place whole: a run that stops half-way leaves nothing a later one would trust.
        mkdirSync(join(cache, ".."), { recursive: true });
        rmSync(cache, { recursive: true, force: true });
        renameSync(join(work, "root"), cache);
    } finally {
        rmSync(work, { recursive: true, force: true });
    }
    return binaries;
}
