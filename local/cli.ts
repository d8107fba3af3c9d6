/**
 * The local stack's commands: `start` (npm start), `up` (npm run local:up), `down` (npm run local:down).
 * `--help` on any of them says how to use it.
 */

import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import type { RawSettings } from "../settings/edgeSettings";
import { edgeSettingKeys, settingKeys } from "../settings/settingsTable";
import { LocalStack, repositoryRoot, stopDetachedStack } from "./localStack";

const usage = `usage:
  npm start -- [options]            run the edge in the foreground; Ctrl-C (or closing the terminal) stops it
  npm run local:up -- [options]     start it, return once it is healthy, leave it running
  npm run local:down -- [--state DIR]
                                    stop what local:up (or an npm start elsewhere) runs in DIR

options:
  --port N          TLS port of the edge (default 8443, or $EDGE_PORT)
  --state DIR       the stack's own folder: keys, releases, logs, outputs.json and its lock
                    (default .local). Two stacks side by side need two folders and two ports.
  --set KEY=VALUE   an edge setting, as in Pulumi config; repeat for more. Lists are JSON.
                    Edge settings: ${edgeSettingKeys.join(", ")}
  --stack NAME      the edge settings of Pulumi.NAME.yaml, to run locally what that stack
                    deploys (its AWS placement settings are listed and left out); --set wins
  --acme-lifetime S with --set certificate=acme: how long the certificates of Pebble (the
                    ACME CA's stand-in) are valid, in seconds (default 90 days, as Let's
                    Encrypt's); the stack renews with a third left, so 120 shows a renewal
  -h, --help        this text`;

export class UsageError extends Error {}

interface Invocation {
    readonly command: "start" | "up" | "down" | "help";
    readonly stateDir: string;
    readonly port: number;
    readonly settings: RawSettings;
    /** AWS placement settings of --stack's file that the local stack leaves out. */
    readonly ignored: readonly string[];
    readonly acmeLifetimeSeconds?: number;
}

/** Reads the command line; throws a UsageError naming what is wrong. */
export function parseInvocation(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, root = repositoryRoot): Invocation {
    const [command, ...rest] = argv;
    const values = readOptions(rest);
    if (values.help || command === "help" || command === "--help" || command === "-h")
        return { command: "help", stateDir: "", port: 0, settings: {}, ignored: [] };
    if (command !== "start" && command !== "up" && command !== "down")
        throw new UsageError(command === undefined ? "which command: start, up or down?" : `unknown command ${JSON.stringify(command)}`);

    const portText = values.port ?? env.EDGE_PORT ?? "8443";
    const port = Number(portText);
    if (!/^[0-9]+$/.test(portText) || port < 1 || port > 65535)
        throw new UsageError(`--port ${JSON.stringify(portText)} must be a whole number from 1 to 65535`);

    const lifetimeText = values["acme-lifetime"];
    const acmeLifetimeSeconds = lifetimeText === undefined ? undefined : Number(lifetimeText);
    if (lifetimeText !== undefined && (!/^[0-9]+$/.test(lifetimeText) || Number(lifetimeText) < 30 || Number(lifetimeText) > 31_536_000))
        throw new UsageError(
            `--acme-lifetime ${JSON.stringify(lifetimeText)} must be a whole number of seconds from 30 to 31536000 (a year)`,
        );

    const fromStack = values.stack === undefined ? { settings: {}, ignored: [] } : stackSettings(values.stack, root);
    const settings: Record<string, string> = { ...fromStack.settings };
    Object.assign(settings, settingAssignments(values.set ?? []));
    return {
        command,
        stateDir: resolve(values.state ?? join(root, ".local")),
        port,
        settings: settings as RawSettings,
        ignored: fromStack.ignored,
        ...(acmeLifetimeSeconds === undefined ? {} : { acmeLifetimeSeconds }),
    };
}

/** `--set KEY=VALUE` arguments as raw settings; throws a UsageError for one without `=`. */
export function settingAssignments(assignments: readonly string[]): Record<string, string> {
    const settings: Record<string, string> = {};
    for (const assignment of assignments) {
        const equals = assignment.indexOf("=");
        if (equals < 1) throw new UsageError(`--set ${JSON.stringify(assignment)} must be KEY=VALUE, e.g. --set idleTimeoutSeconds=60`);
        settings[assignment.slice(0, equals)] = assignment.slice(equals + 1);
    }
    return settings;
}

function readOptions(args: string[]) {
    try {
        return parseArgs({
            args,
            options: {
                port: { type: "string" },
                state: { type: "string" },
                set: { type: "string", multiple: true },
                stack: { type: "string" },
                "acme-lifetime": { type: "string" },
                help: { type: "boolean", short: "h" },
            },
        }).values;
    } catch (error) {
        throw new UsageError((error as Error).message);
    }
}

/** The edge settings a stack file holds, as strings; its other keys of this project, by name. */
function stackSettings(name: string, root: string): { settings: Record<string, string>; ignored: string[] } {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new UsageError(`--stack ${JSON.stringify(name)} is not a stack name`);
    const path = join(root, `Pulumi.${name}.yaml`);
    let file: { config?: Record<string, unknown> } | null;
    try {
        file = parseYaml(readFileSync(path, "utf8"));
    } catch (error) {
        throw new UsageError(`--stack ${name}: cannot read ${path}: ${(error as Error).message}`);
    }
    const settings: Record<string, string> = {};
    const ignored: string[] = [];
    for (const [fullKey, value] of Object.entries(file?.config ?? {})) {
        const [namespace, key] = fullKey.includes(":") ? fullKey.split(":", 2) : ["wss-edge", fullKey];
        if (namespace !== "wss-edge") continue;
        if ((edgeSettingKeys as string[]).includes(key)) settings[key] = typeof value === "string" ? value : JSON.stringify(value);
        else if ((settingKeys as string[]).includes(key)) ignored.push(key);
        else settings[key] = typeof value === "string" ? value : JSON.stringify(value); // the validator names it
    }
    return { settings, ignored };
}

async function main(argv: string[]): Promise<number> {
    let invocation: Invocation;
    try {
        invocation = parseInvocation(argv);
    } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        console.error(`local stack: ${error.message}\n\n${usage}`);
        return 2;
    }
    if (invocation.command === "help") {
        console.log(usage);
        return 0;
    }
    if (invocation.ignored.length > 0)
        console.log(`local stack: left out AWS placement settings of the stack file: ${invocation.ignored.join(", ")}`);
    switch (invocation.command) {
        case "start":
            return runInForeground(invocation);
        case "up":
            return startDetached(invocation);
        case "down": {
            const stopped = await stopDetachedStack(invocation.stateDir);
            console.log(
                stopped.length === 0
                    ? `local stack: nothing running in ${invocation.stateDir}`
                    : `local stack: stopped ${stopped.join(", ")}`,
            );
            return 0;
        }
    }
}

async function runInForeground({ stateDir, port, settings, acmeLifetimeSeconds }: Invocation): Promise<number> {
    let stack: LocalStack | undefined;
    let stopping = false;
    let status: NodeJS.Timeout | undefined;
    const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        if (status) clearInterval(status);
        process.stdout.write(`\nlocal stack: ${signal}, stopping…\n`);
        // A start in progress stops at its next step and stops what it had started.
        await LocalStack.interruptStarts();
        await stack?.stop();
        console.log("local stack: stopped, no process left behind");
        process.exit(0);
    };
    // Ctrl-C, a kill, or the terminal closing: every one stops the stack first.
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stop(signal));

    try {
        stack = await LocalStack.start({ stateDir, edgePort: port, settings, acmeLifetimeSeconds });
    } catch (error) {
        // Interrupted: the signal's handler has the last word, and exits.
        if (stopping) return new Promise(() => undefined);
        throw error;
    }
    printOutputs(stack);
    console.log("\nCtrl-C stops the stack. Live, from the metrics: NGINX's client connections (per proxy), sockets per backend:");
    const live = stack;
    let last = "";
    status = setInterval(async () => {
        const { nginxActive, proxies, backends } = await live.metricsSnapshot();
        const shown = (n: number | undefined) => (n === undefined ? "DOWN" : n);
        const line = [
            ...(Object.keys(proxies).length === 1
                ? [`nginx ${shown(nginxActive)}`]
                : Object.entries(proxies).map(([name, n]) => `${name} ${shown(n)}`)),
            ...Object.entries(backends).map(([name, n]) => `${name} ${shown(n)}`),
        ].join("  │  ");
        if (stopping) return;
        // On a terminal the line updates in place; into a file or a pipe, it is written when it changes.
        if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${line}`);
        else if (line !== last) process.stdout.write(`${line}\n`);
        last = line;
    }, 1000);
    return new Promise(() => undefined);
}

async function startDetached({ stateDir, port, settings, acmeLifetimeSeconds }: Invocation): Promise<number> {
    // Backends run in their own process groups and NGINX daemonizes, so both outlive this process.
    const stack = await LocalStack.start({ stateDir, edgePort: port, settings, acmeLifetimeSeconds });
    printOutputs(stack);
    if (settings.certificate === "acme")
        console.log(
            `\nThe edge's ACME certificate expires ${new Date(new X509Certificate(stack.certificates.edgeCertificateChainPem).validTo).toISOString()} and is not renewed: renewal runs in the stack's own process, which npm start keeps and local:up does not.`,
        );
    console.log(`\nThe stack keeps running; \`npm run local:down -- --state ${stateDir}\` stops it.`);
    return 0;
}

function printOutputs(stack: LocalStack): void {
    const o = stack.outputs;
    console.log(`endpoint          ${o.endpoint}`);
    if (o.httpUrl) console.log(`httpUrl           ${o.httpUrl} (redirects to the endpoint)`);
    console.log(`healthUrl         ${o.healthUrl}`);
    console.log(`caCertificatePem  ${o.caCertificatePem}`);
    if (o.proxies.length > 1) {
        for (const p of o.proxies) console.log(`proxy             ${p.name} on port ${p.port} (NGINX master pid ${p.pid}), behind HAProxy`);
    }
    for (const b of o.backends) console.log(`backend           ${b.name} at ${b.address} (pid ${b.pid})`);
    for (const m of o.metrics) console.log(`metrics           ${m.name} ${m.url}`);
    console.log(`outputs           ${join(stack.stateDir, "outputs.json")}`);
    console.log(`\ntry: npm run smoke -- ${o.endpoint} --ca ${o.caCertificatePem}`);
}

if (require.main === module) {
    main(process.argv.slice(2)).then(
        (code) => {
            if (code !== 0 || process.argv[2] !== "start") process.exit(code);
        },
        (error) => {
            console.error((error as Error).message);
            process.exit(1);
        },
    );
}
