/**
 * The stack's release channel, run against the VM twin as the AWS stack runs it against the
 * proxy VMs: the same user data (`proxyUserData`, pointed at the release store's stand-in), the
 * same command documents (`edgeReleaseDocument`, `healthGateDocument`), each release published
 * to the store by its hash and the store's `current` moved to it, and the documents run on the
 * twin by the agent's stand-in. The backends run on this machine, on the twin's link, as the
 * local stack runs them.
 */
import { healthGateTimeoutSeconds } from "../host/backendHost";
import { edgeDeployEnvironment, proxyUserData } from "../host/proxyHost";
import {
    type CommandDocument,
    currentKey,
    edgeReleaseDocument,
    healthGateDocument,
    type ReleaseStore,
    releaseFolders,
    type StoredRelease,
} from "../host/releaseChannel";
import type { LocalStack } from "../local/localStack";
import { backendServerName } from "../pki/pkiSpec";
import { type EdgePlan, healthGateCredentials, planEdge, releaseOf, twinPlacement } from "../plan/edgePlan";
import { type RawSettings, validateEdgeSettings } from "../settings/edgeSettings";
import type { ProxyPlatform } from "../settings/settingsTable";
import { instanceRoleCredentials, type TwinReleaseStore } from "./releaseStore";
import { ensureRootfs } from "./rootfs";
import { type RemoteResult, refuseIfTwinRunning, VmTwin } from "./vmTwin";

export class TwinDeployError extends Error {
    constructor(
        readonly step: string,
        readonly result: RemoteResult,
    ) {
        super(`vm twin: ${step} failed (exit ${result.code}):\n${result.stderr.trim() || result.stdout.trim()}`);
        this.name = "TwinDeployError";
    }
}

/** The stack's edge documents (components/releaseChannel.ts makes the same), naming the store as the twins reach it. */
export function twinEdgeDocuments(store: ReleaseStore): { readonly release: CommandDocument; readonly gate: CommandDocument } {
    return {
        release: edgeReleaseDocument(store, edgeDeployEnvironment),
        gate: healthGateDocument(store, backendServerName, healthGateTimeoutSeconds),
    };
}

/**
 * A twin booted from the proxy's user data (or `userData`), which fetches from `store`, with the
 * instance role's stand-in on its disk. Not waited for: `waitForBoot` is.
 */
export async function bootProxyTwin(options: {
    name: string;
    subnet: number;
    workDir: string;
    instanceId: string;
    store: ReleaseStore;
    userData?: (store: ReleaseStore) => string;
    /** false: prepared (disk, seed, network) but not booted; `start` boots it. */
    boot?: boolean;
    /** The proxy's Debian (proxyPlatform): which tree it boots, and what its first boot checks. */
    platform?: ProxyPlatform;
    log?: (line: string) => void;
}): Promise<VmTwin> {
    // Before anything of a twin of this name is touched: its disk, its network.
    refuseIfTwinRunning(options.name);
    const rootfs = await ensureRootfs(options.log, undefined, options.platform);
    const twin = new VmTwin({
        name: options.name,
        rootfs,
        workDir: options.workDir,
        subnet: options.subnet,
        userData: (options.userData ?? ((store) => proxyUserData({ store, platform: options.platform })))(options.store),
        instanceId: options.instanceId,
        instanceRoleCredentials,
    });
    if (options.boot === false) await twin.prepare();
    else await twin.create();
    return twin;
}

/** The edge's plan placed on the twin: the proxy VM's, in front of the local stack's backends. */
export function twinPlan(stack: LocalStack, settings: RawSettings = {}): EdgePlan {
    const backends = stack
        .backendNames()
        .map((name) => ({ address: stack.backendAddress(name).host, port: stack.backendAddress(name).port }));
    return planEdge(validateEdgeSettings(settings, "twin"), twinPlacement(backends));
}

/** The gate's credentials put in the store, then each backend's health gate run on the twin, as the AWS stack runs them on the proxy. */
export async function gateBackends(twin: VmTwin, store: TwinReleaseStore, stack: LocalStack): Promise<void> {
    await store.putGateCredentials(healthGateCredentials(stack.certificates));
    const { gate } = twinEdgeDocuments(store.forTwins);
    for (const name of stack.backendNames()) {
        const { host, port } = stack.backendAddress(name);
        const result = await twin.runDocument(gate, { Backend: name, Address: host, Port: String(port) });
        if (result.code !== 0) throw new TwinDeployError(`the health gate of ${name}`, result);
    }
}

/** Publishes the plan's edge release to the store; resolves with it (its id and bytes). */
export function publishEdgeRelease(
    store: TwinReleaseStore,
    stack: LocalStack,
    plan: Pick<EdgePlan, "nginxConfig" | "healthAgent" | "platform">,
): Promise<StoredRelease> {
    return store.publish("edge", releaseFolders.edge, releaseOf(plan, stack.certificates));
}

/**
 * A deploy as `pulumi up` sends it (deploy/ssm-send.sh, on one proxy): the release published,
 * the store's `current` moved to it, the edge document run on the twin with its id; on failure
 * `current` goes back to what it was and the error carries the script's own stderr. Resolves
 * with the document's output.
 */
export async function deployToTwin(
    twin: VmTwin,
    store: TwinReleaseStore,
    stack: LocalStack,
    plan: Pick<EdgePlan, "nginxConfig" | "healthAgent" | "platform">,
): Promise<string> {
    const release = await publishEdgeRelease(store, stack, plan);
    const previous = await store.current(releaseFolders.edge);
    await store.setCurrent(releaseFolders.edge, release.id);
    const result = await twin.runDocument(twinEdgeDocuments(store.forTwins).release, { Release: release.id });
    if (result.code !== 0) {
        if (previous === undefined) await store.remove(currentKey(releaseFolders.edge));
        else await store.setCurrent(releaseFolders.edge, previous);
        throw new TwinDeployError("the deploy", result);
    }
    return result.stdout;
}
