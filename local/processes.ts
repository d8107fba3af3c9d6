/** Process control for the local stack, the tests and the benchmark: waiting, stopping, running scripts. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { basename, join } from "node:path";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 50 ms until it holds; throws `message` after `timeoutMs`. */
export async function waitUntil(timeoutMs: number, check: () => boolean | Promise<boolean>, message: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`${message} within ${timeoutMs / 1000} s`);
        await sleep(50);
    }
}

/** Whether `pid` is a live process (not a zombie). */
export function isAlive(pid: number): boolean {
    if (!(pid > 0)) return false;
    try {
        process.kill(pid, 0);
        return !readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z");
    } catch {
        return false;
    }
}

export function childPids(pid: number): number[] {
    try {
        return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
        return [];
    }
}

/** Every process under `pid`: its children, theirs, and so on. */
export function descendantPids(pid: number): number[] {
    return childPids(pid).flatMap((child) => [child, ...descendantPids(child)]);
}

/** The command line of `pid`, arguments joined by spaces ("" once it is gone). */
export function commandLine(pid: number): string {
    try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    } catch {
        return "";
    }
}

/** Sends `signal` to a child, waits for its exit, and kills it if that takes longer than `graceMs`. */
export async function terminate(child: ChildProcess, signal: NodeJS.Signals, graceMs = 6000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
}

/** The same for a process that is not our child (a stack `local:up` left running). */
export async function terminatePid(pid: number, signal: NodeJS.Signals, graceMs = 6000): Promise<void> {
    try {
        process.kill(pid, signal);
    } catch {
        return; // already gone
    }
    try {
        await waitUntil(graceMs, () => !isAlive(pid), `process ${pid} did not stop`);
    } catch {
        if (isAlive(pid)) process.kill(pid, "SIGKILL");
    }
}

/** NGINX's fast shutdown (SIGTERM) for the master; its workers go with it. */
export async function stopNginx(master: number): Promise<void> {
    const workers = childPids(master);
    await terminatePid(master, "SIGTERM", 5000);
    for (const pid of workers) if (isAlive(pid)) process.kill(pid, "SIGKILL");
}

/** A script of deploy/ that exited non-zero, with what it printed on stderr. */
export class ScriptError extends Error {
    constructor(
        readonly script: string,
        readonly exitCode: number,
        readonly stderr: string,
    ) {
        super(`${script} failed (exit ${exitCode}):\n${stderr}`);
        this.name = "ScriptError";
    }
}

/** Runs a bash script with `stdin`; resolves with its stdout, rejects with a ScriptError. */
export function runScript(
    script: string,
    args: readonly string[],
    stdin: string,
    env: Record<string, string>,
    signal?: AbortSignal,
): Promise<string> {
    return new Promise((done, fail) => {
        const child = spawn("bash", [script, ...args], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"], signal });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("error", fail);
        child.on("close", (code) => (code === 0 ? done(stdout) : fail(new ScriptError(basename(script), code ?? -1, stderr.trim()))));
        child.stdin.on("error", () => undefined); // a script that exits before reading all of stdin
        child.stdin.end(stdin);
    });
}

/**
 * Where `binary` is: on PATH, or in the sbin folders a non-root user's PATH often lacks (Debian
 * puts nginx in /usr/sbin). Undefined when it is nowhere.
 */
export function findBinary(binary: string): string | undefined {
    if (binary.includes("/")) return isExecutable(binary) ? binary : undefined;
    const folders = [...(process.env.PATH ?? "").split(":").filter(Boolean), "/usr/local/sbin", "/usr/sbin", "/sbin"];
    return folders.map((folder) => join(folder, binary)).find(isExecutable);
}

function isExecutable(path: string): boolean {
    try {
        accessSync(path, constants.X_OK);
        return true;
    } catch {
        return false;
    }
}

/** The hard limit on open files for processes started from here. */
export function hardFileLimit(): number {
    try {
        const out = execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim();
        return out === "unlimited" ? 1048576 : Number(out);
    } catch {
        return 1024;
    }
}
