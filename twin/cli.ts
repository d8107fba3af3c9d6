/**
 * The proxy VM's twin on this machine:
 *
 *   npm run vm-twin -- up [--set KEY=VALUE …]   build (once) and boot it from the stack's user data,
 *                                              deploy to it through the release store and the
 *                                              documents' agent stand-in, serve until Ctrl-C
 *   npm run vm-twin -- down                     remove what an `up` that did not end cleanly left
 *   npm run vm-twin -- image                    build the twin's Debian trees now (12 and 13, once per machine)
 *
 * Needs root (network namespaces, an overlay mount, systemd-nspawn).
 */
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { settingAssignments } from "../local/cli";
import { LocalStack, repositoryRoot, stopDetachedStack } from "../local/localStack";
import { terminatePid } from "../local/processes";
import { type RawSettings, validateEdgeSettings } from "../settings/edgeSettings";
import { type ProxyPlatform, settingsTable } from "../settings/settingsTable";
import { TwinReleaseStore } from "./releaseStore";
import { ensureRootfs } from "./rootfs";
import { bootProxyTwin, deployToTwin, gateBackends, twinPlan } from "./twinEdge";
import { refuseIfTwinRunning, removeTwinCgroups, runningTwinPids, type VmTwin } from "./vmTwin";

const run = promisify(execFile);
const workDir = "/var/tmp/wss-edge-vm-twin/instances";
const stateDir = join(repositoryRoot, ".local-vm-twin");
const name = "proxy";
const storeDir = join(workDir, `${name}-store`);
const usage = `usage:
  npm run vm-twin -- up [--set KEY=VALUE …]   boot the proxy VM's twin from the stack's user data, deploy
                                             to it as the stack does (a release in the store's stand-in,
                                             the stack's documents run on it), serve until Ctrl-C
  npm run vm-twin -- down                     remove a twin (and its backends) left by an up that did not end cleanly
  npm run vm-twin -- image                    build the twin's Debian trees now (12 and 13, once per machine; up builds the one it needs)`;

async function main(argv: string[]): Promise<number> {
    const [command, ...rest] = argv;
    const { values } = parseArgs({
        args: rest,
        options: { set: { type: "string", multiple: true }, help: { type: "boolean", short: "h" } },
    });
    if (values.help || command === "--help" || command === "-h" || command === undefined) {
        console.log(usage);
        return command === undefined ? 2 : 0;
    }
    if (process.getuid?.() !== 0) {
        console.error("vm twin: needs root (network namespaces, an overlay mount, systemd-nspawn)");
        return 1;
    }
    if (command === "down") return down();
    if (command === "image") {
        // One tree per proxy platform: the tests boot both.
        for (const platform of settingsTable.proxyPlatform.choices as readonly ProxyPlatform[]) {
            const tree = await ensureRootfs((line) => console.log(`vm twin: ${line}`), undefined, platform);
            console.log(`vm twin: ${platform} tree at ${tree}`);
        }
        return 0;
    }
    if (command !== "up") {
        console.error(`vm twin: unknown command ${JSON.stringify(command)}\n\n${usage}`);
        return 2;
    }
    let settings: RawSettings;
    try {
        settings = settingAssignments(values.set ?? []) as RawSettings;
    } catch (error) {
        console.error(`vm twin: ${(error as Error).message}\n\n${usage}`);
        return 2;
    }
    return up(settings);
}

async function up(settings: RawSettings): Promise<number> {
    let twin: VmTwin | undefined;
    let stack: LocalStack | undefined;
    let store: TwinReleaseStore | undefined;
    const stop = async () => {
        // The stack first: it stops renewing the certificate (a renewal under way finishes on the twin), then the twin goes.
        await stack?.stop();
        await twin?.destroy();
        await store?.stop();
        await rm(storeDir, { recursive: true, force: true });
        process.exit(0);
    };
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stop());
    try {
        // Refused before the store's folder (beside the twin's) is touched.
        refuseIfTwinRunning(name);
        await rm(storeDir, { recursive: true, force: true });
        store = await TwinReleaseStore.start({ directory: storeDir });
        twin = await bootProxyTwin({
            name,
            subnet: 1,
            workDir,
            instanceId: `i-twin-${Date.now().toString(16)}`,
            store: store.forTwins,
            log: (line) => console.log(`vm twin: ${line}`),
            platform: validateEdgeSettings(settings, "local").proxyPlatform,
        });
        stack = await LocalStack.start({ stateDir, edgePort: 0, bindAddress: twin.hostAddress, settings });
        await twin.waitForBoot();
        await gateBackends(twin, store, stack);
        console.log((await deployToTwin(twin, store, stack, twinPlan(stack, settings))).trim());
        // certificate acme: each renewed certificate reaches the twin as a release, as pulumi up rolls it to the proxies.
        const [deployedTwin, deployedStore, deployedStack] = [twin, store, stack];
        stack.onCertificateRenewed(async () => {
            console.log((await deployToTwin(deployedTwin, deployedStore, deployedStack, twinPlan(deployedStack, settings))).trim());
            console.log("vm twin: the renewed ACME certificate is live");
        });
    } catch (error) {
        // A failed start leaves nothing behind.
        await twin?.destroy();
        await stack?.stop();
        await store?.stop();
        await rm(storeDir, { recursive: true, force: true });
        throw error;
    }
    console.log(`twin              ${twin.address} (console: ${twin.consoleLog})`);
    console.log(`release store     ${store.endpointHere} (bucket ${store.bucket}; the twin reaches it at ${store.forTwins.endpointUrl})`);
    console.log(`endpoint          wss://localhost/ at ${twin.address}:443`);
    console.log(`caCertificatePem  ${stack.caCertificatePath}`);
    console.log(`\ntry: npm run smoke -- wss://localhost/ --address ${twin.address} --ca ${stack.caCertificatePath}`);
    console.log("Ctrl-C stops the twin and removes it.");
    return new Promise(() => undefined);
}

async function down(): Promise<number> {
    // The twin's systemd-nspawn, if a killed `up` left it booted: its NGINX and health agent go with it
    // (the release store ran in the killed `up` itself).
    for (const pid of runningTwinPids(`wss-twin-${name}`)) await terminatePid(pid, "SIGTERM", 60000);
    await run("umount", ["-l", join(workDir, name, "merged")]).catch(() => undefined);
    await run("ip", ["netns", "delete", `wss-twin-${name}`]).catch(() => undefined);
    removeTwinCgroups(`wss-twin-${name}`);
    await rm(join(workDir, name), { recursive: true, force: true });
    await rm(storeDir, { recursive: true, force: true });
    const stopped = await stopDetachedStack(stateDir);
    console.log(`vm twin: removed; ${stopped.length > 0 ? `stopped ${stopped.join(", ")}` : "no backends were running"}`);
    return 0;
}

main(process.argv.slice(2)).then(
    (code) => {
        if (code !== 0 || process.argv[2] !== "up") process.exit(code);
    },
    (error) => {
        console.error((error as Error).message);
        process.exit(1);
    },
);
