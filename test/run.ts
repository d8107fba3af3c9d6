// The test command (`npm test`, `npm run test:unit`): Node's own test runner, in two lanes side by
// side. The end-to-end files (`*.e2e.test.ts`: they start NGINX, backends, browsers, VM twins) run
// one after another; the in-process files (`*.test.ts`: renderer, settings, the AWS program under
// mocks) run beside them (two at a time when they run alone). The summary names every failed and every skipped test, with its reason.
//
//   npm test [-- [--unit] [--test-name-pattern=<regex>] [file…]]
//
// Each lane is Node's `run()`; each test file is a process of its own, as with `node --test`.
import { readdirSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { run } from "node:test";

const root = resolve(__dirname, "..");
const testDir = __dirname;

interface Options {
    readonly unitOnly: boolean;
    readonly patterns: string[];
    readonly files: string[];
}

function parseArgs(argv: readonly string[]): Options {
    const patterns: string[] = [];
    const files: string[] = [];
    let unitOnly = false;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === "--unit") unitOnly = true;
        else if (arg.startsWith("--test-name-pattern=")) patterns.push(arg.slice("--test-name-pattern=".length));
        else if (arg === "--test-name-pattern" && argv[i + 1] !== undefined) patterns.push(argv[++i]);
        else if (arg.endsWith(".test.ts")) files.push(resolve(arg));
        else {
            console.error(`test: unknown argument ${JSON.stringify(arg)}; takes --unit, --test-name-pattern=<regex> and test files`);
            process.exit(2);
        }
    }
    return { unitOnly, patterns, files };
}

/** Whether a test file starts processes (its name ends in .e2e.test.ts). */
export const startsProcesses = (file: string) => file.endsWith(".e2e.test.ts");

interface Outcome {
    readonly name: string;
    readonly file: string;
    readonly reason?: string;
}

/** What the lanes report, gathered from their events. */
class Tally {
    passed = 0;
    readonly failed: Outcome[] = [];
    readonly skipped: Outcome[] = [];
    readonly fileSeconds = new Map<string, number>();

    take(event: { type: string; data: any }): void {
        const { type, data } = event;
        if (type === "test:stdout" || type === "test:stderr") {
            process.stderr.write(data.message);
            return;
        }
        if (type !== "test:pass" && type !== "test:fail") return;
        const file = relative(root, data.file ?? "");
        const suite = data.details?.type === "suite";
        if (data.nesting === 0) {
            const seconds = (data.details?.duration_ms ?? 0) / 1000;
            this.fileSeconds.set(file, (this.fileSeconds.get(file) ?? 0) + seconds);
            const mark = type === "test:pass" ? "✔" : "✖";
            console.log(`${mark} ${data.name} (${seconds.toFixed(1)} s, ${file})`);
        }
        if (type === "test:pass") {
            // A skipped suite counts as one skipped test: its tests are never declared.
            // Left out by --test-name-pattern: not run, by request, and not a skip to report.
            if (data.skip === "test name does not match pattern") return;
            if (data.skip !== undefined && data.skip !== false) {
                this.skipped.push({ name: data.name, file, reason: typeof data.skip === "string" ? data.skip : "skipped" });
            } else if (!suite && (data.todo === undefined || data.todo === false)) this.passed++;
            return;
        }
        // A suite fails on its own only when its set-up or hooks did; its failed tests are counted themselves.
        const error = data.details?.error;
        if (suite && error?.failureType === "subtestsFailed") return;
        const cause = error?.cause ?? error;
        this.failed.push({ name: data.name, file, reason: String(cause?.stack ?? cause?.message ?? cause ?? "failed") });
    }

    print(seconds: number): void {
        const slowest = [...this.fileSeconds].sort((a, b) => b[1] - a[1]).slice(0, 5);
        console.log(`\nslowest files: ${slowest.map(([file, s]) => `${basename(file)} ${s.toFixed(0)} s`).join(", ")}`);
        if (this.skipped.length > 0) {
            console.log(`\nskipped (${this.skipped.length}):`);
            for (const s of this.skipped) console.log(`  - ${s.name} (${s.file}): ${s.reason}`);
        }
        if (this.failed.length > 0) {
            console.log(`\nfailed (${this.failed.length}):`);
            for (const f of this.failed) console.log(`  ✖ ${f.name} (${f.file})\n${indent(f.reason ?? "", 6)}`);
        }
        console.log(`\ntests took ${seconds.toFixed(0)} s`);
        console.log(`${this.passed} passed, ${this.failed.length} failed, ${this.skipped.length} skipped`);
    }
}

const indent = (text: string, spaces: number) =>
    text
        .split("\n")
        .map((line) => " ".repeat(spaces) + line)
        .join("\n");

async function lane(files: readonly string[], patterns: readonly string[], tally: Tally, concurrency = 1): Promise<void> {
    if (files.length === 0) return;
    const stream = run({ files: [...files], concurrency, ...(patterns.length > 0 ? { testNamePatterns: [...patterns] } : {}) });
    for await (const event of stream) tally.take(event);
}

async function main(): Promise<void> {
    const options = parseArgs(process.argv.slice(2));
    const all =
        options.files.length > 0
            ? options.files
            : readdirSync(testDir)
                  .filter((name) => name.endsWith(".test.ts"))
                  .sort()
                  .map((name) => join(testDir, name));
    const inProcess = all.filter((file) => !startsProcesses(file));
    const endToEnd = options.unitOnly ? [] : all.filter(startsProcesses);
    const tally = new Tally();
    const started = Date.now();
    // Alone, the in-process files take both cores.
    await Promise.all([lane(endToEnd, options.patterns, tally), lane(inProcess, options.patterns, tally, endToEnd.length === 0 ? 2 : 1)]);
    tally.print((Date.now() - started) / 1000);
    process.exitCode = tally.failed.length > 0 || tally.passed + tally.skipped.length === 0 ? 1 : 0;
}

void main();
