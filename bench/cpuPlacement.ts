import { execFileSync } from "node:child_process";

/**
 * Which cores the proxy gets and which the load generator and backends get.
 *
 * Deployed, the edge has a VM of its own and the clients and backends are elsewhere. Here all of
 * them share one small machine, so whatever CPU the proxy uses comes out of the generator's and
 * the backends' share, and "throughput × direct" would measure that contention instead of the
 * proxy. Pinning the proxy to its own core(s), and the generator and backends (also for direct)
 * to the rest, models the deployment: a ratio below 1 then means the proxy held traffic back.
 */
export interface CpuPlacement {
    /** Cores as taskset lists them, e.g. "1" or "2-3". */
    readonly proxyCores: string;
    readonly loadCores: string;
    /** How many cores the proxy has: NGINX's `worker_processes auto` on a VM of that size. */
    readonly proxyCoreCount: number;
    /** Pins this process; whatever it starts afterwards (backends, generators) inherits it. */
    pinLoad(pid: number): void;
    /** Pins every thread of each process; the workers NGINX forks later inherit it. */
    pinProxy(pids: readonly number[]): void;
}

/** Half the cores (rounded down, at least one) for the proxy; none when there is only one core. */
export function planCpuPlacement(cores: number): CpuPlacement | undefined {
    if (cores < 2) return undefined;
    try {
        execFileSync("taskset", ["-V"], { stdio: "ignore" });
    } catch {
        throw new Error(
            "bench: taskset (util-linux) is needed to give the proxy its own cores; install it with: apt-get install -y util-linux, or run with --shared-cores",
        );
    }
    const proxyCount = Math.floor(cores / 2);
    const range = (first: number, last: number) => (first === last ? `${first}` : `${first}-${last}`);
    const loadCores = range(0, cores - proxyCount - 1);
    const proxyCores = range(cores - proxyCount, cores - 1);
    const pin = (list: string, pid: number) => {
        try {
            execFileSync("taskset", ["-a", "-p", "-c", list, String(pid)], { stdio: "ignore" });
        } catch {
            // the process ended between listing and pinning; nothing of it is left to measure
        }
    };
    return {
        proxyCores,
        loadCores,
        proxyCoreCount: proxyCount,
        pinLoad: (pid) => pin(loadCores, pid),
        pinProxy: (pids) => {
            for (const pid of pids) pin(proxyCores, pid);
        },
    };
}
