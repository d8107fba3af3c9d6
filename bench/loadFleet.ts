import { type ChildProcess, fork } from "node:child_process";
import { join } from "node:path";
import type { Command, Reply } from "./loadClient";

/**
 * Several load-generator processes: each holds at most what one process's descriptor limit
 * allows, and connects from its own range of client networks (127.<100+n>.<0-249>.1, one /24
 * each, so ip_hash spreads them and no source/destination pair runs out of ports).
 */
export class LoadFleet {
    private constructor(private readonly workers: ChildProcess[]) {}

    static async start(processes: number): Promise<LoadFleet> {
        const workers = Array.from({ length: processes }, () =>
            fork(join(__dirname, "loadClient.ts"), [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] }),
        );
        return new LoadFleet(workers);
    }

    get size(): number {
        return this.workers.length;
    }

    /** Client addresses of worker `n`: `count` distinct /24 networks. */
    static addresses(n: number, count = 250): string[] {
        return Array.from({ length: count }, (_, i) => `127.${100 + n}.${i}.1`);
    }

    send(n: number, command: Command): Promise<Reply> {
        const worker = this.workers[n];
        return new Promise((resolve, reject) => {
            const onExit = (code: number | null) => reject(new Error(`load generator ${n} exited (${code}) during ${command.cmd}`));
            worker.once("exit", onExit);
            worker.once("message", (reply: Reply) => {
                worker.off("exit", onExit);
                resolve(reply);
            });
            // A generator that is gone (Ctrl-C reaches it too, or the bench is stopping it) closes
            // the channel: without the callback, Node raises that as an uncaught 'error' event.
            worker.send(command, (error) => {
                if (!error) return;
                worker.off("exit", onExit);
                reject(new Error(`load generator ${n} is gone (${error.message}) before ${command.cmd}`));
            });
        });
    }

    /** Sends each worker its own command and waits for all replies. */
    all(command: (n: number) => Command): Promise<Reply[]> {
        return Promise.all(this.workers.map((_, n) => this.send(n, command(n))));
    }

    async stop(): Promise<void> {
        await Promise.all(
            this.workers.map(
                (worker) =>
                    new Promise<void>((resolve) => {
                        if (worker.exitCode !== null) return resolve();
                        const timer = setTimeout(() => worker.kill("SIGKILL"), 5000);
                        worker.once("exit", () => {
                            clearTimeout(timer);
                            resolve();
                        });
                        if (worker.connected) worker.disconnect();
                        else worker.kill("SIGTERM");
                    }),
            ),
        );
    }
}
