/** The ACME stand-in (acme/pebbleStandIn.ts) for a test file: in a folder of its own, stopped when the file ends, whatever its outcome. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { type PebbleCa, startPebble as startStandIn } from "../../acme/pebbleStandIn";

export async function startPebble(options: Omit<Parameters<typeof startStandIn>[0], "dir">): Promise<PebbleCa> {
    const dir = mkdtempSync(join(tmpdir(), "wss-edge-pebble-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const ca = await startStandIn({ dir, ...options });
    after(() => ca.stop());
    return ca;
}
