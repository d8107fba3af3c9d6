import type { EdgeConfigSpec } from "../edgeConfigSpec";
import type { ValueGuard } from "./valueGuard";

/** The main context and `events`: who runs NGINX, how many workers, their limits and files. */
export function mainContext(v: ValueGuard, { workers, paths }: EdgeConfigSpec): string[] {
    return [
        "# wss-edge: NGINX terminating TLS for WebSockets and proxying them, re-encrypted, to the backends.",
        "# Rendered by nginx/renderNginxConfig.ts; edit the stack's settings, not this file.",
        "",
        ...(workers.user === undefined ? [] : [`user ${v.word("workers.user", workers.user)};`]),
        `worker_processes ${workers.processes === "auto" ? "auto" : v.positiveInt("workers.processes", workers.processes)};`,
        "# Each proxied socket holds two descriptors (client and backend side), plus files and logs.",
        `worker_rlimit_nofile ${v.positiveInt("workers.fileLimit", workers.fileLimit)};`,
        "# A reload retires the old workers; they keep serving their open sockets for this long, then",
        "# close them so clients reconnect to the new workers. Bounded so that many deploys in a row",
        "# cannot pile up old workers (with old backends and certificates) for ever.",
        `worker_shutdown_timeout ${v.positiveInt("workers.shutdownTimeoutSeconds", workers.shutdownTimeoutSeconds)}s;`,
        `pid ${v.path("paths.pidFile", paths.pidFile)};`,
        `error_log ${v.path("paths.errorLog", paths.errorLog)} warn;`,
        "",
        "events {",
        "    # Counts client and backend connections alike: room for half as many WebSockets.",
        `    worker_connections ${v.positiveInt("workers.connections", workers.connections)};`,
        "}",
    ];
}
