/**
 * The stack's deploy, run against the VM twin exactly as the AWS stack runs it against the proxy
 * VM: the same user data (`proxyUserData`), the health gate command on the proxy for each backend
 * (`backendHealthGateCommand`), the deploy script copied where CopyToRemote puts it, then the
 * deploy command line (`proxyDeployCommand`) over SSH with the release on standard input. The
 * backends run on this machine, on the twin's link, as the local stack runs them.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { encodeDeployBundle, releaseFiles } from "../deploy/deployBundle";
import { backendHealthGateCommand } from "../host/backendHost";
import { edgeDeployScript, proxyDeployCommand, proxyHost, proxyUserData } from "../host/proxyHost";
import type { LocalStack } from "../local/localStack";
import { awsProxyHost, edgeConfigSpec } from "../nginx/edgeConfigFromSettings";
import { renderNginxConfig } from "../nginx/renderNginxConfig";
import { backendServerName } from "../pki/pkiSpec";
import { type RawSettings, validateEdgeSettings } from "../settings/edgeSettings";
import { ensureRootfs } from "./rootfs";
import { newSshKeyPair, type RemoteResult, type SshKeyPair, VmTwin } from "./vmTwin";

/** The proxy VM the twin stands for: the default instance type's memory and vCPUs (c6i.large). */
export const twinCapacity = { memoryMiB: 4096, vcpus: 2 } as const;

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

/** The nginx.conf the AWS stack would render for this twin, in front of the local stack's backends. */
export function twinConfig(stack: LocalStack, settings: RawSettings = {}): string {
    const edge = validateEdgeSettings(settings, "twin");
    const backends = stack
        .backendNames()
        .map((name) => ({ address: stack.backendAddress(name).host, port: stack.backendAddress(name).port }));
    return renderNginxConfig(
        edgeConfigSpec(edge, backends, awsProxyHost({ ...twinCapacity, backendCount: backends.length }), ["localhost"]),
    );
}

/** Each backend's health gate, run on the twin as the AWS stack runs it on the proxy. */
export async function gateBackends(twin: VmTwin, stack: LocalStack): Promise<void> {
    const pki = stack.certificates;
    const credentials = encodeDeployBundle({
        "ca.crt": pki.caCertificatePem,
        "client.crt": pki.proxyClientCertificate.certificatePem,
        "client.key": pki.proxyClientCertificate.privateKeyPem,
    });
    for (const name of stack.backendNames()) {
        const { host, port } = stack.backendAddress(name);
        const result = await twin.ssh(backendHealthGateCommand(name, host, port, backendServerName), credentials);
        if (result.code !== 0) throw new TwinDeployError(`the health gate of ${name}`, result);
    }
}

/** Copies the deploy script and runs the deploy command with the release on stdin; resolves with its output. */
export async function deployToTwin(twin: VmTwin, stack: LocalStack, nginxConfig: string): Promise<string> {
    await twin.copy(join(__dirname, "..", edgeDeployScript), proxyHost.deployScriptPath);
    const pki = stack.certificates;
    const release = encodeDeployBundle(
        releaseFiles({
            nginxConfig,
            certificateChainPem: pki.edgeCertificateChainPem,
            privateKeyPem: pki.edgePrivateKeyPem,
            backendCaPem: pki.caCertificatePem,
            proxyClientCertificatePem: pki.proxyClientCertificate.certificatePem,
            proxyClientKeyPem: pki.proxyClientCertificate.privateKeyPem,
            backendHealthAgent: true,
        }),
    );
    const result = await twin.ssh(proxyDeployCommand, release);
    if (result.code !== 0) throw new TwinDeployError("the deploy", result);
    return result.stdout;
}
