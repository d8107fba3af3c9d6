import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchMain } from "./benchMain";

/**
 * Runs one bench section on its own (`npm run bench:<name> [-- --quick]`) in a scratch folder of
 * its own, its markdown written to bench/results/<name>[-quick].md.
 */
export function runSectionAlone(name: string, title: string, run: (quick: boolean, dir: string) => Promise<string>): void {
    const quick = process.argv.includes("--quick");
    benchMain(name, async (dir) => {
        const markdown = await run(quick, dir);
        const out = join(__dirname, "results");
        mkdirSync(out, { recursive: true });
        const file = join(out, `${name}${quick ? "-quick" : ""}.md`);
        writeFileSync(file, `# ${title} (${new Date().toISOString()})\n\n${markdown}\n`);
        console.log(`[${name}] results: ${file}`);
    });
}
