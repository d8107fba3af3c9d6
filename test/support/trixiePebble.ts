/**
 * Debian 13's Pebble (2.6), which offers ACME Renewal Information (RFC 9773) where Debian 12's
 * (2.4) does not: its package's two binaries, taken from Debian's archive as the package index
 * names them today and unpacked (not installed) into a folder of this machine's, once.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

const mirror = "http://deb.debian.org/debian";
const cache = "/var/tmp/wss-edge-pebble-trixie";

/** The paths of trixie's `pebble` and `pebble-challtestsrv`, fetched on first use. */
export function trixiePebbleBinaries(): { readonly pebble: string; readonly challtestsrv: string } {
    const binaries = { pebble: join(cache, "usr/bin/pebble"), challtestsrv: join(cache, "usr/bin/pebble-challtestsrv") };
    if (existsSync(binaries.pebble) && existsSync(binaries.challtestsrv)) return binaries;
    mkdirSync("/var/tmp", { recursive: true });
    const work = mkdtempSync("/var/tmp/wss-edge-pebble-trixie-");
    try {
        const architecture = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
        const index = execFileSync(
            "sh",
            ["-c", `curl -fsS --max-time 120 ${mirror}/dists/trixie/main/binary-${architecture}/Packages.xz | xz -dc`],
            { encoding: "utf8", maxBuffer: 512 * 1024 * 1024 },
        );
        const stanza = index.split("\n\n").find((entry) => entry.startsWith("Package: pebble\n"));
        const filename = stanza && /^Filename: (\S+)$/m.exec(stanza)?.[1];
        if (!filename) throw new Error(`Debian 13's package index names no pebble for ${architecture}`);
        execFileSync("curl", ["-fsS", "--max-time", "120", "-o", join(work, "pebble.deb"), `${mirror}/${filename}`]);
        execFileSync("dpkg-deb", ["-x", join(work, "pebble.deb"), join(work, "root")]);
        // Renamed into place whole: a run that stops half-way leaves nothing a later one would trust.
        rmSync(cache, { recursive: true, force: true });
        renameSync(join(work, "root"), cache);
    } finally {
        rmSync(work, { recursive: true, force: true });
    }
    return binaries;
}
