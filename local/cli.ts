/**
 * The local stack's commands:
 *
 *   npm start            [-- --port 8443 --state .local]   run in the foreground; Ctrl-C stops everything
 *   npm run local:up     [-- --port 8443 --state .local]   start, return once healthy, keep running
 *   npm run local:down   [-- --state .local]               stop what local:up started
 *
 * The port also comes from EDGE_PORT. Outputs are printed and written to <state>/outputs.json.
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { LocalStack, repositoryRoot, stopDetachedStack } from "./localStack";

async function main(argv: string[]): Promise<number> {
    const [command, ...rest] = argv;
    const { values } = parseArgs({
        args: rest,
        options: { port: { type: "string" }, state: { type: "string" } },
    });
    const stateDir = resolve(values.state ?? join(repositoryRoot, ".local"));
    const portText = values.port ?? process.env.EDGE_PORT ?? "8443";
    const port = Number(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
        console.error(`local stack: port ${JSON.stringify(portText)} must be a whole number from 1 to 65535`);
        return 2;
    }

    switch (command) {
        case "start":
            return runInForeground(stateDir, port);
        case "up":
            return startDetached(stateDir, port);
        case "down": {
            const stopped = await stopDetachedStack(stateDir);
            console.log(stopped.length === 0 ? "local stack: nothing running" : `local stack: stopped ${stopped.join(", ")}`);
            return 0;
        }
        default:
            console.error("usage: local/cli.ts start|up|down [--port N] [--state DIR]");
            return 2;
    }
}

async function runInForeground(stateDir: string, port: number): Promise<number> {
    const stack = await LocalStack.start({ stateDir, edgePort: port });
    let stopping = false;
    const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write(`\nlocal stack: ${signal}, stopping…\n`);
        clearInterval(status);
        await stack.stop();
        console.log("local stack: stopped, no process left behind");
        process.exit(0);
    };
    process.on("SIGINT", () => void stop("SIGINT"));
    process.on("SIGTERM", () => void stop("SIGTERM"));
    printOutputs(stack);
    console.log("\nCtrl-C stops the stack. Live sockets per backend:");

    const status = setInterval(async () => {
        const counts = await stack.backendSocketCounts();
        const line = Object.entries(counts)
            .map(([name, n]) => `${name} ${n === undefined ? "DOWN" : n}`)
            .join("  │  ");
        if (!stopping) process.stdout.write(`\r\x1b[K${line}`);
    }, 1000);
    return new Promise(() => undefined);
}

async function startDetached(stateDir: string, port: number): Promise<number> {
    // Backends run in their own process groups and NGINX daemonizes, so both outlive this process.
    const stack = await LocalStack.start({ stateDir, edgePort: port });
    printOutputs(stack);
    console.log("\nThe stack keeps running; `npm run local:down` stops it.");
    return 0;
}

function printOutputs(stack: LocalStack): void {
    const o = stack.outputs;
    console.log(`endpoint          ${o.endpoint}`);
    console.log(`healthUrl         ${o.healthUrl}`);
    console.log(`caCertificatePem  ${o.caCertificatePem}`);
    for (const b of o.backends) console.log(`backend           ${b.name} at ${b.address} (pid ${b.pid})`);
    console.log(`outputs           ${join(stack.stateDir, "outputs.json")}`);
    console.log(`\ntry: npm run smoke -- ${o.endpoint} --ca ${o.caCertificatePem}`);
}

main(process.argv.slice(2)).then(
    (code) => {
        if (code !== 0 || process.argv[2] !== "start") process.exit(code);
    },
    (error) => {
        console.error((error as Error).message);
        process.exit(1);
    },
);
