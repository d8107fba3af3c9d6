import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { encodeDeployBundle } from "../deploy/deployBundle";
import { backendDeployCommand, backendDeployScript, backendHealthGateCommand, backendHost, backendUserData } from "../host/backendHost";
import { backendServerName } from "../pki/pkiSpec";
import { backendTlsOf, healthGateCredentials } from "../plan/edgePlan";
import { sha256 } from "./edgeDeploy";
import type { IssuedCertificate } from "./edgePki";
import type { EdgeProxy } from "./edgeProxy";
import { cpuArchitecture, hardenedInstanceSettings, userDataWithHostKey } from "./instanceDefaults";

export interface BackendFleetArgs {
    readonly instanceType: string;
    readonly port: number;
    /** Instances are spread over these subnets (one per availability zone) in turn. */
    readonly subnetIds: pulumi.Input<string[]>;
    readonly securityGroupId: pulumi.Input<string>;
    /** One certificate per backend; the fleet has as many instances as certificates. */
    readonly certificates: readonly IssuedCertificate[];
    /** The CA the proxy's client certificate must chain to (and the backends' certificates too). */
    readonly caCertificatePem: pulumi.Input<string>;
    /** What the proxy presents to the backends; each health gate checks its backend with it. */
    readonly proxyClientCertificate: IssuedCertificate;
    /** Run this image instead of building `backend/` into an ECR repository. */
    readonly image?: string;
    readonly pingIntervalSeconds: number;
    /** The proxy VM: the deploys jump through it, and the health gates run on it. */
    readonly proxy: EdgeProxy;
}

/** One backend: its instance, the deploy of its app and certificates, and the gate it passes. */
export interface Backend {
    readonly name: string;
    readonly instance: aws.ec2.Instance;
    readonly privateIp: pulumi.Output<string>;
    readonly deploy: command.remote.Command;
    /** Passes once the backend answers /healthz from the proxy, over mutual TLS. */
    readonly healthGate: command.remote.Command;
}

/**
 * N instances running the backend WebSocket app as a container. Each deploy reaches its host
 * over SSH through the proxy, with the release (image, settings, certificates) on stdin, so a
 * renewed certificate or a new image reaches the hosts in the same `pulumi up` — certificates
 * without closing a socket. Deploys go one backend at a time: each waits until the backend
 * before it passes its health gate from the proxy, and the edge's config is deployed only once
 * every backend has passed.
 */
export class BackendFleet extends pulumi.ComponentResource {
    readonly backends: Backend[];
    readonly privateIps: pulumi.Output<string>[];
    /** The image the instances run (a digest when built here). */
    readonly imageReference: pulumi.Output<string>;
    readonly repository?: aws.ecr.Repository;

    constructor(name: string, args: BackendFleetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:backends:BackendFleet", name, {}, opts);
        const architecture = cpuArchitecture(args.instanceType);
        const { proxy } = args;

        let instanceProfile: aws.iam.InstanceProfile | undefined;
        let rolePolicy: aws.iam.RolePolicy | undefined;
        if (args.image === undefined) {
            this.repository = new aws.ecr.Repository(
                `${name}-app`,
                // Instances run the pushed digest, never the tag, so a moving tag is safe.
                { imageTagMutability: "MUTABLE", imageScanningConfiguration: { scanOnPush: true }, forceDelete: true },
                { parent: this },
            );
            new aws.ecr.LifecyclePolicy(
                `${name}-app`,
                { repository: this.repository.name, policy: JSON.stringify(ecrLifecycle) },
                { parent: this },
            );
            const credentials = aws.ecr.getAuthorizationTokenOutput({ registryId: this.repository.registryId }, { parent: this });
            const image = new docker.Image(
                `${name}-app`,
                {
                    // Relative to the project root, Pulumi's working directory: a path of this
                    // checkout in the state would show as a change from every other checkout.
                    build: { context: "backend", platform: `linux/${architecture === "arm64" ? "arm64" : "amd64"}` },
                    imageName: pulumi.interpolate`${this.repository.repositoryUrl}:backend`,
                    registry: {
                        server: this.repository.repositoryUrl,
                        username: credentials.userName,
                        password: pulumi.secret(credentials.password),
                    },
                    // Pull-request previews need no Docker engine and stay fast.
                    buildOnPreview: false,
                },
                { parent: this },
            );
            this.imageReference = image.repoDigest;

            // The only thing a backend host may do in AWS: pull its image. It reads no secret from
            // AWS at all; its key comes with its deploy, so no backend can read another's key.
            const role = new aws.iam.Role(
                `${name}-instance`,
                { assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "ec2.amazonaws.com" }) },
                { parent: this },
            );
            rolePolicy = new aws.iam.RolePolicy(
                `${name}-instance`,
                {
                    role: role.id,
                    policy: {
                        Version: "2012-10-17",
                        Statement: [
                            { Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
                            {
                                Effect: "Allow",
                                Action: ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                                Resource: this.repository.arn,
                            },
                        ],
                    },
                },
                { parent: this },
            );
            instanceProfile = new aws.iam.InstanceProfile(`${name}-instance`, { role: role.name }, { parent: this });
        } else {
            this.imageReference = pulumi.output(args.image);
        }

        const ami = aws.ec2.getAmiOutput(
            {
                owners: ["amazon"],
                mostRecent: true,
                filters: [
                    { name: "name", values: [`al2023-ami-2023.*-${architecture}`] },
                    { name: "state", values: ["available"] },
                ],
            },
            { parent: this },
        );

        const scriptText = readFileSync(join(__dirname, "..", backendDeployScript), "utf8");
        const gateCredentials = pulumi.secret(
            pulumi
                .all([args.caCertificatePem, args.proxyClientCertificate.certificatePem, args.proxyClientCertificate.privateKeyPem])
                .apply(([caCertificatePem, certificatePem, privateKeyPem]) =>
                    healthGateCredentials({ caCertificatePem, proxyClientCertificate: { certificatePem, privateKeyPem } }),
                ),
        );

        this.backends = [];
        for (const [i, cert] of args.certificates.entries()) {
            const previousGate = this.backends[i - 1]?.healthGate;
            const hostKey = new tls.PrivateKey(`${name}-${cert.name}-host`, { algorithm: "ED25519" }, { parent: this });
            const instance = new aws.ec2.Instance(
                `${name}-${cert.name}`,
                {
                    ami: ami.id,
                    instanceType: args.instanceType,
                    subnetId: pulumi.output(args.subnetIds).apply((ids) => ids[i % ids.length]),
                    vpcSecurityGroupIds: [args.securityGroupId],
                    iamInstanceProfile: instanceProfile?.name,
                    keyName: proxy.deployKeyName,
                    // Egress only (image pulls): the security group admits nothing but the proxy.
                    associatePublicIpAddress: true,
                    ...hardenedInstanceSettings,
                    userData: userDataWithHostKey(hostKey, backendUserData),
                    userDataReplaceOnChange: true,
                    tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}-${cert.name}`, Role: "wss-edge-backend" },
                },
                {
                    parent: this,
                    // A new Amazon Linux release must not replace every backend at once; roll it
                    // with `pulumi up --replace` (see the change matrix in docs/aws.md).
                    ignoreChanges: ["ami"],
                    // Role first (its image pull needs it), and an in-place change (instance type:
                    // stop and start) only once the backend before it is serving again.
                    dependsOn: [...(rolePolicy ? [rolePolicy] : []), ...(previousGate ? [previousGate] : [])],
                },
            );

            const connection: command.types.input.remote.ConnectionArgs = {
                host: instance.privateIp,
                user: backendHost.user,
                privateKey: proxy.deployPrivateKey,
                hostKey: hostKey.publicKeyOpenssh,
                dialErrorLimit: 40,
                proxy: proxy.connection,
            };
            const copyScript = new command.remote.CopyToRemote(
                `${name}-${cert.name}-script`,
                {
                    connection,
                    source: new pulumi.asset.FileAsset(backendDeployScript),
                    remotePath: backendHost.deployScriptPath,
                    triggers: [sha256(scriptText), instance.id],
                },
                { parent: this, dependsOn: previousGate ? [previousGate] : [] },
            );

            const settings = pulumi
                .all([this.imageReference, this.repository?.repositoryUrl])
                .apply(([image, repositoryUrl]) =>
                    [
                        `IMAGE=${image}`,
                        `REGISTRY=${repositoryUrl ? repositoryUrl.split("/")[0] : ""}`,
                        `BACKEND_NAME=${cert.name}`,
                        `PORT=${args.port}`,
                        `PING_INTERVAL_SECONDS=${args.pingIntervalSeconds}`,
                        `METRICS_PORT=${backendHost.metricsPort}`,
                        "",
                    ].join("\n"),
                );
            const release = pulumi.secret(
                pulumi
                    .all([settings, cert.certificatePem, cert.privateKeyPem, args.caCertificatePem])
                    .apply(([env, certificatePem, privateKeyPem, caPem]) =>
                        encodeDeployBundle({
                            "backend.env": env,
                            ...Object.fromEntries(
                                Object.entries(backendTlsOf({ certificatePem, privateKeyPem }, caPem)).map(([file, pem]) => [
                                    `tls/${file}`,
                                    pem,
                                ]),
                            ),
                        }),
                    ),
            );
            // Public material only, readable in a preview: what a new run of the deploy is for.
            const triggers = pulumi
                .all([settings, cert.certificatePem, args.caCertificatePem, instance.id])
                .apply(([env, certificatePem, caPem, instanceId]) => [
                    `app:${sha256(env)}`,
                    `certificates:${sha256(certificatePem + caPem)}`,
                    `script:${sha256(scriptText)}`,
                    `instance:${instanceId}`,
                ]);
            const deploy = new command.remote.Command(
                `${name}-${cert.name}-deploy`,
                { connection, create: backendDeployCommand, stdin: release, triggers, logging: "stdoutAndStderr" },
                { parent: this, dependsOn: [copyScript, ...(previousGate ? [previousGate] : [])] },
            );
            const healthGate = new command.remote.Command(
                `${name}-${cert.name}-health`,
                {
                    connection: proxy.connection,
                    create: instance.privateIp.apply((ip) => backendHealthGateCommand(cert.name, ip, args.port, backendServerName)),
                    stdin: gateCredentials,
                    // Checked again after every deploy and every in-place change of the host.
                    triggers: pulumi.all([triggers, instance.instanceType]).apply(([deployed, type]) => [...deployed, `type:${type}`]),
                    logging: "stdoutAndStderr",
                },
                { parent: this, dependsOn: [deploy] },
            );
            this.backends.push({ name: cert.name, instance, privateIp: instance.privateIp, deploy, healthGate });
        }
        this.privateIps = this.backends.map((b) => b.privateIp);

        this.registerOutputs({
            privateIps: this.privateIps,
            imageReference: this.imageReference,
            repositoryUrl: this.repository?.repositoryUrl,
        });
    }
}

/** Keeps the 10 newest images (instances run the newest by digest) and drops untagged ones after a week. */
const ecrLifecycle = {
    rules: [
        {
            rulePriority: 1,
            description: "Untagged images after 7 days",
            selection: { tagStatus: "untagged", countType: "sinceImagePushed", countUnit: "days", countNumber: 7 },
            action: { type: "expire" },
        },
        {
            rulePriority: 2,
            description: "Only the 10 newest images",
            selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 10 },
            action: { type: "expire" },
        },
    ],
};
