import type * as aws from "@pulumi/aws";
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { backendHealthAgentScript, sha256 } from "../deploy/deployBundle";
import { releaseFolders, storedRelease } from "../host/releaseChannel";
import { type EdgePlan, releaseOf } from "../plan/edgePlan";
import type { CommandTargets, ReleaseChannel } from "./releaseChannel";

/** The PKI's part of a release, as the AWS components give it. */
export interface EdgeCertificateInputs {
    readonly caCertificatePem: pulumi.Input<string>;
    readonly edgeCertificateChainPem: pulumi.Input<string>;
    readonly edgePrivateKeyPem: pulumi.Input<string>;
    readonly proxyClientCertificate: { readonly certificatePem: pulumi.Input<string>; readonly privateKeyPem: pulumi.Input<string> };
}

export interface EdgeDeployArgs {
    readonly channel: ReleaseChannel;
    /** The proxies: the single VM by its instance ID, or the Auto Scaling group. */
    readonly proxies: CommandTargets;
    /** The edge's plan: the config every proxy runs, and whether the health agent runs beside it. */
    readonly plan: pulumi.Input<Pick<EdgePlan, "nginxConfig" | "healthAgent" | "platform">>;
    readonly certificates: EdgeCertificateInputs;
    /** Where the proxies send their metrics (metrics.env, deploy/deployBundle.ts `metricsEnvironment`). */
    readonly metricsEnvironment: pulumi.Input<string>;
    /** What must be done first: the backends' health gates, so NGINX is never pointed at a backend that isn't serving. */
    readonly after?: pulumi.Input<pulumi.Resource>[];
}

/**
 * One edge release: written to the store, made `current` (what a proxy that boots applies), then
 * applied by Systems Manager on each proxy in turn, each one's deploy ending with NGINX answering
 * its health check before the next starts (deploy/ssm-send.sh); a proxy that fails stops the
 * rollout, and `current` goes back to the release before. The deploy script reloads NGINX, never
 * restarts it, so open WebSockets stay up. The rollout runs again when the release changes and
 * when the proxies do (a replaced single VM), so a new VM is always checked to serve it.
 */
export class EdgeDeploy extends pulumi.ComponentResource {
    /** Content hashes of what the release holds (readable in a preview), and its id. */
    readonly triggers: pulumi.Output<string[]>;
    readonly releaseId: pulumi.Output<string>;
    readonly release: aws.s3.BucketObjectv2;
    readonly deploy: command.local.Command;

    constructor(name: string, args: EdgeDeployArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:proxy:EdgeDeploy", name, {}, opts);
        const { certificates, channel } = args;
        const plan = pulumi.output(args.plan);
        const stored = pulumi
            .all([
                plan,
                certificates.caCertificatePem,
                certificates.edgeCertificateChainPem,
                certificates.edgePrivateKeyPem,
                certificates.proxyClientCertificate.certificatePem,
                certificates.proxyClientCertificate.privateKeyPem,
                args.metricsEnvironment,
            ])
            .apply(([planned, caCertificatePem, edgeCertificateChainPem, edgePrivateKeyPem, certificatePem, privateKeyPem, metrics]) =>
                storedRelease(
                    "edge",
                    releaseOf(
                        planned,
                        {
                            caCertificatePem,
                            edgeCertificateChainPem,
                            edgePrivateKeyPem,
                            proxyClientCertificate: { certificatePem, privateKeyPem },
                        },
                        metrics,
                    ),
                ),
            );
        this.releaseId = pulumi.unsecret(stored.apply((r) => r.id));
        this.release = channel.publish(`${name}-release`, releaseFolders.edge, stored, { parent: this });

        // Hashes of public material only, so the trigger diff in a preview stays readable. Keys
        // change only together with their certificates.
        this.triggers = pulumi
            .all([
                plan,
                pulumi.unsecret(pulumi.output(certificates.edgeCertificateChainPem)),
                certificates.caCertificatePem,
                certificates.proxyClientCertificate.certificatePem,
                this.releaseId,
            ])
            .apply(([planned, chain, backendCa, clientCert, id]) => [
                `config:${sha256(planned.nginxConfig)}`,
                `certificates:${sha256(chain + backendCa + clientCert)}`,
                `agent:${planned.healthAgent ? sha256(backendHealthAgentScript) : "off"}`,
                `release:${id}`,
            ]);

        this.deploy = channel.send(
            name,
            {
                document: channel.edgeDocument,
                parameters: { Release: this.releaseId },
                targets: args.proxies,
                what: pulumi.interpolate`the edge release ${this.releaseId.apply((id) => id.slice(0, 12))}`,
                pointer: { folder: releaseFolders.edge, release: this.releaseId },
                triggers: this.triggers,
                dependsOn: pulumi.output(args.after ?? []).apply((after) => [this.release, ...after]),
            },
            { parent: this },
        );

        this.registerOutputs({ triggers: this.triggers, releaseId: this.releaseId });
    }
}
