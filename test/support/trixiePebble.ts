/**
 * Debian 13's Pebble (2.6), which offers ACME Renewal Information (RFC 9773) where Debian 12's
 * (2.4) does not: its package's two binaries, unpacked from Debian's archive (local/debianArchive.ts).
 */
import { join } from "node:path";
import { trixiePackages } from "../../local/debianArchive";

/** The paths of trixie's `pebble` and `pebble-challtestsrv`, fetched on first use. */
export function trixiePebbleBinaries(): { readonly pebble: string; readonly challtestsrv: string } {
    const root = trixiePackages("pebble", ["pebble"]);
    return { pebble: join(root, "usr/bin/pebble"), challtestsrv: join(root, "usr/bin/pebble-challtestsrv") };
}
