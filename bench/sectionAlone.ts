import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Runs one bench section on its own (`npm run bench:<name> [-- --quick]`): a scratch folder for
 * its state, removed after, and its markdown written to bench/results/<name>[-quick].md.
 */
export function runSectionAlone(name: string, title: string, run: (quick: boolean, dir: string) => Promise<string>): void {
    const quick = process.argv.includes("--quick");
    const dir = mkdtempSync(join(tmpdir(), `wss-edge-${name}-`));
    run(quick, dir)
        .then((markdown) => {
            const out = join(__dirname, "results");
            mkdirSync(out, { recursive: true });
            const file = join(out, `${name}${quick ? "-quick" : ""}.md`);
            writeFileSync(file, `# ${title} (${new Date().toISOString()})\n\n${markdown}\n`);
            console.log(`[${name}] results: ${file}`);
        })
        .catch((error) => {
            console.error(`${name}: ${(error as Error).stack ?? error}`);
            process.exitCode = 1;
        })
        .finally(() => rmSync(dir, { recursive: true, force: true }));
}
