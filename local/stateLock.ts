import { closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isAlive } from "./processes";

/** What the lock file says: who holds the state folder, and where their edge listens. */
export interface LockHolder {
    /** Processes that hold the stack: the command that started it, NGINX's master, the backends. */
    readonly pids: readonly number[];
    readonly port?: number;
    /**
     * Each process the stack started, recorded as it starts, with what its command line shows (so
     * a reused pid is never taken for it): a start interrupted at any moment leaves nothing that
     * `local:down` cannot find.
     */
    readonly processes?: readonly { readonly pid: number; readonly command: string }[];
}

export class StateInUseError extends Error {
    constructor(stateDir: string, holder: LockHolder) {
        super(
            `local stack: ${stateDir} belongs to a running stack${holder.port ? ` (edge on port ${holder.port}` : " ("}` +
                `${holder.port ? ", " : ""}processes ${holder.pids.filter(isAlive).join(", ")}). ` +
                `Run another one beside it with its own folder, e.g. --state ${stateDir}-2 --port 9443; ` +
                `or stop that one with: npm run local:down -- --state ${stateDir}`,
        );
        this.name = "StateInUseError";
    }
}

/**
 * A state folder belongs to one stack at a time: its keys, releases, NGINX's pid file and the
 * backends' logs are that stack's. The lock file (`stack.lock`) names the processes holding it;
 * it is free once none of them lives, so a stack that crashed does not lock its folder for ever.
 * Taken with O_EXCL, so of two stacks starting at once only one gets it.
 */
export class StateLock {
    private constructor(
        private readonly path: string,
        private holder: LockHolder,
    ) {}

    static lockFile(stateDir: string): string {
        return join(stateDir, "stack.lock");
    }

    static acquire(stateDir: string): StateLock {
        const path = StateLock.lockFile(stateDir);
        const holder: LockHolder = { pids: [process.pid] };
        for (let attempt = 0; attempt < 2; attempt++) {
            try {
                const fd = openSync(path, "wx", 0o600);
                writeSync(fd, JSON.stringify(holder));
                closeSync(fd);
                return new StateLock(path, holder);
            } catch (error) {
                if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
                const current = StateLock.read(stateDir);
                if (current?.pids.some(isAlive)) throw new StateInUseError(stateDir, current);
                rmSync(path, { force: true }); // left by a stack whose processes are all gone
            }
        }
        throw new Error(`local stack: could not take ${path}`);
    }

    /** Who holds `stateDir`, if anyone wrote a lock there. */
    static read(stateDir: string): LockHolder | undefined {
        try {
            return JSON.parse(readFileSync(StateLock.lockFile(stateDir), "utf8")) as LockHolder;
        } catch {
            return undefined;
        }
    }

    /** Names the processes that hold the stack from now on (the lock outlives this process when `local:up` exits). */
    record(holder: LockHolder): void {
        this.holder = holder;
        writeFileSync(this.path, JSON.stringify(holder), { mode: 0o600 });
    }

    get holders(): LockHolder {
        return this.holder;
    }

    release(): void {
        rmSync(this.path, { force: true });
    }

    /** Frees a folder whose stack `local:down` has stopped. */
    static remove(stateDir: string): void {
        rmSync(StateLock.lockFile(stateDir), { force: true });
    }
}
