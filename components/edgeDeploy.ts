import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { backendHealthAgentScript } from "../deploy/deployBundle";
import { edgeDeployScript, proxyDeployCommand, proxyHost } from "../host/proxyHost";
import { type EdgePlan, releaseBundle } from "../plan/edgePlan";
import type { EdgeProxy } from "./edgeProxy";

/** The PKI's part of a release, as the AWS components give it. */
export interface EdgeCertificateInputs {
    readonly caCertificatePem: pulumi.Input<string>;
    readonly edgeCertificateChainPem: pulumi.Input<string>;
    readonly edgePrivateKeyPem: pulumi.Input<string>;
    readonly proxyClientCertificate: { readonly certificatePem: pulumi.Input<string>; readonly privateKeyPem: pulumi.Input<string> };
}

export interface EdgeDeployArgs {
    readonly proxy: EdgeProxy;
    /** The edge's plan: the config every proxy runs, and whether the health agent runs beside it. */
    readonly plan: pulumi.Input<Pick<EdgePlan, "nginxConfig" | "healthAgent">>;
    readonly certificates: EdgeCertificateInputs;
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
        const { proxy } = args;
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

        const { certificates } = args;
        const plan = pulumi.output(args.plan);
        const release = pulumi.secret(
            pulumi
                .all([
                    plan,
                    certificates.caCertificatePem,
                    certificates.edgeCertificateChainPem,
                    certificates.edgePrivateKeyPem,
                    certificates.proxyClientCertificate.certificatePem,
                    certificates.proxyClientCertificate.privateKeyPem,
                ])
                .apply(([planned, caCertificatePem, edgeCertificateChainPem, edgePrivateKeyPem, certificatePem, privateKeyPem]) =>
                    releaseBundle(planned, {
                        caCertificatePem,
                        edgeCertificateChainPem,
                        edgePrivateKeyPem,
                        proxyClientCertificate: { certificatePem, privateKeyPem },
                    }),
                ),
        );
        // Hashes of public material only, so the trigger diff in a preview stays readable. Keys
        // change only together with their certificates.
        this.triggers = pulumi
            .all([
                plan,
                pulumi.unsecret(pulumi.output(certificates.edgeCertificateChainPem)),
                certificates.caCertificatePem,
                certificates.proxyClientCertificate.certificatePem,
                proxy.instance.id,
            ])
            .apply(([planned, chain, backendCa, clientCert, instanceId]) => [
                `config:${sha256(planned.nginxConfig)}`,
                `certificates:${sha256(chain + backendCa + clientCert)}`,
                `script:${sha256(scriptText)}`,
                `agent:${planned.healthAgent ? sha256(backendHealthAgentScript) : "off"}`,
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
