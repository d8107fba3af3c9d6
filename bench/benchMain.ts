import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { LocalStack, stopDetachedStack } from "../local/localStack";
import { commandLine, descendantPids, isAlive, stopNginx, terminatePid } from "../local/processes";

const interruptions = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Runs a bench entry point with a scratch folder of its own, removed at the end. A failure is
 * printed and exits 1; Ctrl-C, a kill or a closed terminal exit 128 + the signal. Either way,
 * everything the bench started is stopped first: the local stacks, NGINX, backends and agents
 * run detached (a terminal's Ctrl-C reaches none of them) and would otherwise hold ports, memory
 * and thousands of sockets after it.
 */
export function benchMain(name: string, main: (scratch: string) => Promise<void>): void {
    const scratch = mkdtempSync(join(tmpdir(), `wss-edge-${name}-`));
    let interrupted = false;
    for (const signal of interruptions) {
        process.on(signal, () => {
            if (interrupted) return;
            interrupted = true;
            console.error(`\n[${name}] ${signal}: stopping everything the bench started…`);
            void stopEverything(scratch).finally(() => {
                rmSync(scratch, { recursive: true, force: true });
                console.error(`[${name}] stopped, no process left behind`);
                process.exit(128 + constants.signals[signal]);
            });
        });
    }
    main(scratch)
        .then(() => rmSync(scratch, { recursive: true, force: true }))
        .catch(async (error) => {
            // What failed because of the interruption is not news; the interruption ends the run.
            if (interrupted) return;
            console.error(`${name}: ${(error as Error).stack ?? error}`);
            // A step that failed between starting a stack and its try block would leave it running.
            await stopEverything(scratch);
            rmSync(scratch, { recursive: true, force: true });
            process.exit(1);
        });
}

async function stopEverything(scratch: string): Promise<void> {
    // A stack still starting stops at its next step, and stops what it had started.
    await LocalStack.interruptStarts();
    // Stacks first, in their own order (agents, then NGINX, then backends), so none acts on the others' going.
    const stateDirs = findFiles(scratch, "stack.lock").map((file) => join(file, ".."));
    await Promise.all(stateDirs.map((dir) => stopDetachedStack(dir).catch(() => [])));
    // NGINX the bench ran outside a stack (the tutorial's config) daemonizes: only its pid file knows it.
    for (const pidFile of findFiles(scratch, "nginx.pid")) {
        const master = Number(readFileSync(pidFile, "utf8").trim());
        if (isAlive(master) && commandLine(master).startsWith("nginx: master process")) await stopNginx(master);
    }
    // Then whatever is still ours: load generators, HAProxy, Caddy, a restarted backend.
    await Promise.all(descendantPids(process.pid).map((pid) => terminatePid(pid, "SIGTERM")));
}

function findFiles(dir: string, fileName: string, depth = 4): string[] {
    if (depth === 0 || !existsSync(dir)) return [];
    return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) return findFiles(path, fileName, depth - 1);
        return entry.name === fileName ? [path] : [];
    });
}
