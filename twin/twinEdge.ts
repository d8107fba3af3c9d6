/**
 * The stack's deploy, run against the VM twin exactly as the AWS stack runs it against the proxy
 * VM: the same user data (`proxyUserData`), the health gate command on the proxy for each backend
 * (`backendHealthGateCommand`), the deploy script copied where CopyToRemote puts it, then the
 * deploy command line (`proxyDeployCommand`) over SSH with the release on standard input. The
 * backends run on this machine, on the twin's link, as the local stack runs them.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { backendHealthGateCommand } from "../host/backendHost";
import { edgeDeployScript, proxyDeployCommand, proxyHost, proxyUserData } from "../host/proxyHost";
import type { LocalStack } from "../local/localStack";
import { backendServerName } from "../pki/pkiSpec";
import { type EdgePlan, healthGateCredentials, planEdge, releaseBundle, twinPlacement } from "../plan/edgePlan";
import { type RawSettings, validateEdgeSettings } from "../settings/edgeSettings";
import { ensureRootfs } from "./rootfs";
import { newSshKeyPair, type RemoteResult, refuseIfTwinRunning, type SshKeyPair, VmTwin } from "./vmTwin";

export class TwinDeployError extends Error {
    constructor(
        readonly step: string,
        readonly result: RemoteResult,
    ) {
        super(`vm twin: ${step} failed (exit ${result.code}):\n${result.stderr.trim() || result.stdout.trim()}`);
        this.name = "TwinDeployError";
    }
}

/** A twin booted from the proxy's user data with keys of its own, not yet deployed to. */
export async function bootProxyTwin(options: {
    name: string;
    subnet: number;
    workDir: string;
    instanceId: string;
    userData?: (hostKey: SshKeyPair) => string;
    log?: (line: string) => void;
}): Promise<VmTwin> {
    // Before anything of a twin of this name is touched: its keys, its disk, its network.
    refuseIfTwinRunning(options.name);
    const rootfs = await ensureRootfs(options.log);
    const keysDir = join(options.workDir, `${options.name}-keys`);
    await mkdir(keysDir, { recursive: true, mode: 0o700 });
    const deployKey = await newSshKeyPair(keysDir, "deploy");
    const hostKey = await newSshKeyPair(keysDir, "host");
    const twin = new VmTwin({
        name: options.name,
        rootfs,
        workDir: options.workDir,
        subnet: options.subnet,
        userData: (options.userData ?? proxyUserData)(hostKey),
        instanceId: options.instanceId,
        authorizedKey: deployKey.publicKeyOpenssh,
        hostPublicKey: hostKey.publicKeyOpenssh,
        deployKeyPath: deployKey.privateKeyPath,
    });
    await twin.create();
    return twin;
}

/** The edge's plan placed on the twin: the proxy VM's, in front of the local stack's backends. */
export function twinPlan(stack: LocalStack, settings: RawSettings = {}): EdgePlan {
    const backends = stack
        .backendNames()
        .map((name) => ({ address: stack.backendAddress(name).host, port: stack.backendAddress(name).port }));
    return planEdge(validateEdgeSettings(settings, "twin"), twinPlacement(backends));
}

/** Each backend's health gate, run on the twin as the AWS stack runs it on the proxy. */
export async function gateBackends(twin: VmTwin, stack: LocalStack): Promise<void> {
    const credentials = healthGateCredentials(stack.certificates);
    for (const name of stack.backendNames()) {
        const { host, port } = stack.backendAddress(name);
        const result = await twin.ssh(backendHealthGateCommand(name, host, port, backendServerName), credentials);
        if (result.code !== 0) throw new TwinDeployError(`the health gate of ${name}`, result);
    }
}

/** Copies the deploy script and runs the deploy command with the plan's release on stdin; resolves with its output. */
export async function deployToTwin(twin: VmTwin, stack: LocalStack, plan: Pick<EdgePlan, "nginxConfig" | "healthAgent">): Promise<string> {
    await twin.copy(join(__dirname, "..", edgeDeployScript), proxyHost.deployScriptPath);
    const result = await twin.ssh(proxyDeployCommand, releaseBundle(plan, stack.certificates));
    if (result.code !== 0) throw new TwinDeployError("the deploy", result);
    return result.stdout;
}
