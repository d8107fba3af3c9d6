import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { backendHealthAgentScript, encodeDeployBundle, releaseFiles } from "../deploy/deployBundle";
import { edgeDeployScript, proxyDeployCommand, proxyHost } from "../host/proxyHost";
import type { EdgeProxy } from "./edgeProxy";

export interface EdgeTlsFiles {
    readonly certificateChainPem: pulumi.Input<string>;
    readonly privateKeyPem: pulumi.Input<string>;
    readonly backendCaPem: pulumi.Input<string>;
    readonly proxyClientCertificatePem: pulumi.Input<string>;
    readonly proxyClientKeyPem: pulumi.Input<string>;
}

export interface EdgeDeployArgs {
    readonly proxy: EdgeProxy;
    /** The complete nginx.conf from renderNginxConfig. */
    readonly nginxConfig: pulumi.Input<string>;
    readonly tls: EdgeTlsFiles;
    /** Run the backend health agent beside NGINX (the activeHealthChecks setting). */
    readonly backendHealthAgent: boolean;
    /** What must be done first: the backends' health gates, so NGINX is never pointed at a backend that isn't serving. */
    readonly after?: pulumi.Input<pulumi.Resource>[];
}

/**
 * One edge release on the proxy VM: the deploy script is copied, then run with the release
 * (config, certificates, keys) on standard input. It reloads NGINX, never restarts it, so open
 * WebSockets stay up. Both steps run again when the release changes (an update) and when the VM
 * is new (a replacement: the instance ID is one of their triggers), so a replaced or re-created
 * VM is always deployed to.
 */
export class EdgeDeploy extends pulumi.ComponentResource {
    /** Content hashes of what the release holds, and the instance it went to. */
    readonly triggers: pulumi.Output<string[]>;
    readonly deploy: command.remote.Command;

    constructor(name: string, args: EdgeDeployArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:proxy:EdgeDeploy", name, {}, opts);
        const { proxy, tls } = args;
        const scriptText = readFileSync(join(__dirname, "..", edgeDeployScript), "utf8");

        const copyScript = new command.remote.CopyToRemote(
            `${name}-script`,
            {
                connection: proxy.connection,
                // Relative to the project root: no path of this checkout lands in the stack's state.
                source: new pulumi.asset.FileAsset(edgeDeployScript),
                remotePath: proxyHost.deployScriptPath,
                triggers: [sha256(scriptText), proxy.instance.id],
            },
            { parent: this },
        );

        const release = pulumi.secret(
            pulumi
                .all([
                    args.nginxConfig,
                    tls.certificateChainPem,
                    tls.privateKeyPem,
                    tls.backendCaPem,
                    tls.proxyClientCertificatePem,
                    tls.proxyClientKeyPem,
                ])
                .apply(([nginxConfig, certificateChainPem, privateKeyPem, backendCaPem, proxyClientCertificatePem, proxyClientKeyPem]) =>
                    encodeDeployBundle(
                        releaseFiles({
                            nginxConfig,
                            certificateChainPem,
                            privateKeyPem,
                            backendCaPem,
                            proxyClientCertificatePem,
                            proxyClientKeyPem,
                            backendHealthAgent: args.backendHealthAgent,
                        }),
                    ),
                ),
        );
        // Hashes of public material only, so the trigger diff in a preview stays readable. Keys
        // change only together with their certificates.
        this.triggers = pulumi
            .all([
                args.nginxConfig,
                pulumi.unsecret(pulumi.output(tls.certificateChainPem)),
                tls.backendCaPem,
                tls.proxyClientCertificatePem,
                proxy.instance.id,
            ])
            .apply(([config, chain, backendCa, clientCert, instanceId]) => [
                `config:${sha256(config)}`,
                `certificates:${sha256(chain + backendCa + clientCert)}`,
                `script:${sha256(scriptText)}`,
                `agent:${args.backendHealthAgent ? sha256(backendHealthAgentScript) : "off"}`,
                `instance:${instanceId}`,
            ]);

        this.deploy = new command.remote.Command(
            name,
            {
                connection: proxy.connection,
                create: proxyDeployCommand,
                stdin: release,
                triggers: this.triggers,
                logging: "stdoutAndStderr",
            },
            { parent: this, dependsOn: pulumi.output(args.after ?? []).apply((after) => [copyScript, ...after]) },
        );

        this.registerOutputs({ triggers: this.triggers });
    }
}

export function sha256(text: string): string {
    return createHash("sha256").update(text).digest("hex");
}
