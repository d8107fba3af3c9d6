// `npm run test:busy`: the whole suite on a busy machine. A CPU burner (one process spinning,
// bounded in time) occupies a core for as long as the suite runs, as a second build or a browser
// would on a developer's machine or a shared CI box; the suite must pass all the same.
//
//   npm run test:busy [-- <what npm test takes>]
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

/** The burner stops on its own after this long, whatever happens to this process. */
const burnLimitSeconds = 1200;

const root = resolve(__dirname, "..");
const burner = spawn(
    process.execPath,
    ["-e", `const end = Date.now() + ${burnLimitSeconds * 1000}; let x = 0; while (Date.now() < end) x = (x * 31 + 7) % 1000003;`],
    { stdio: "ignore" },
);
console.log(`test:busy: a CPU burner (pid ${burner.pid}) spins for the whole run, at most ${burnLimitSeconds} s`);

const suite = spawn(process.execPath, ["--import", "tsx", "test/run.ts", ...process.argv.slice(2)], { cwd: root, stdio: "inherit" });
const stopBurner = () => {
    if (burner.exitCode === null) burner.kill("SIGKILL");
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
        suite.kill(signal);
        stopBurner();
    });
}
suite.on("exit", (code, signal) => {
    const burnt = burnerCpuSeconds(burner.pid ?? 0);
    stopBurner();
    console.log(`test:busy: the burner used ${burnt.toFixed(0)} s of CPU while the suite ran`);
    process.exit(code ?? (signal ? 1 : 0));
});

/** CPU seconds (user + system) `pid` has used, from /proc (0 once it is gone). */
function burnerCpuSeconds(pid: number): number {
    try {
        const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
        const ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));
        return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
    } catch {
        return 0;
    }
}
