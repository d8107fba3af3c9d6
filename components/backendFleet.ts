import * as aws from "@pulumi/aws";
import type * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { metricsFiles, sha256 } from "../deploy/deployBundle";
import { backendHost, backendUserData } from "../host/backendHost";
import { releaseFolders, storedRelease } from "../host/releaseChannel";
import { type BackendEnvironment, backendTlsOf } from "../plan/edgePlan";
import type { IssuedCertificate } from "./edgePki";
import { cpuArchitecture, hardenedInstanceSettings } from "./instanceDefaults";
import { InstanceRole } from "./instanceRole";
import { packageFile } from "./packageFiles";
import type { CommandTargets, ReleaseChannel } from "./releaseChannel";

export interface BackendFleetArgs {
    readonly instanceType: string;
    readonly port: number;
    /** Instances are spread over these subnets (one per availability zone) in turn. */
    readonly subnetIds: pulumi.Input<string[]>;
    /** In the default VPC, backends reach AWS over a public address; in your private subnets they have none. */
    readonly publicAddress: boolean;
    readonly securityGroupId: pulumi.Input<string>;
    /** One certificate per backend; the fleet has as many instances as certificates. */
    readonly certificates: readonly IssuedCertificate[];
    /** The CA the proxy's client certificate must chain to (and the backends' certificates too). */
    readonly caCertificatePem: pulumi.Input<string>;
    /** Run this image instead of building `backend/` into an ECR repository. */
    readonly image?: string;
    /** What the edge's settings tell every backend (the plan's backendEnvironmentOf). */
    readonly environment: pulumi.Input<BackendEnvironment>;
    /** The release store and the documents the deploys and gates run. */
    readonly channel: ReleaseChannel;
    /** Where each health gate runs: the proxies, which check the backend over mutual TLS as NGINX will. */
    readonly proxies: CommandTargets;
    /** What the gates need first: their credentials in the store. */
    readonly gateCredentials: pulumi.Resource;
    /** What the instances need before their first boot (the VPC endpoints they reach AWS through). */
    readonly after?: readonly pulumi.Resource[];
    /** Where each backend sends its metrics (metrics.env), and the namespace its role may send to. */
    readonly metrics: { readonly environment: pulumi.Input<string>; readonly namespace: string };
}

/** One backend: its instance, the deploy of its app and certificates, and the gate it passes. */
export interface Backend {
    readonly name: string;
    readonly instance: aws.ec2.Instance;
    readonly privateIp: pulumi.Output<string>;
    readonly release: aws.s3.BucketObjectv2;
    readonly deploy: command.local.Command;
    /** Passes once the backend answers /healthz from the proxies, over mutual TLS. */
    readonly healthGate: command.local.Command;
}

/**
 * N instances running the backend WebSocket app as a container. Each backend's release (image,
 * settings, certificates) goes to its own folder of the release store, which only its own role
 * can read; Systems Manager has the host apply it, so a renewed certificate or a new image
 * reaches the hosts in the same `pulumi up` — certificates without closing a socket — and a
 * replaced host applies its folder's current release at first boot. Deploys go one backend at a
 * time: each waits until the backend before it passes its health gate from the proxies, and the
 * edge's release is sent only once every backend has passed.
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
                    build: { context: packageFile("backend"), platform: `linux/${architecture === "arm64" ? "arm64" : "amd64"}` },
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
        } else {
            this.imageReference = pulumi.output(args.image);
        }

        const repository = this.repository;
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
        const { channel } = args;

        this.backends = [];
        for (const [i, cert] of args.certificates.entries()) {
            const previousGate = this.backends[i - 1]?.healthGate;
            const folder = releaseFolders.backend(cert.name);
            // What this host may do in AWS: be managed by Systems Manager, read its own releases
            // (no other backend's key), and pull its image.
            const role = new InstanceRole(
                `${name}-${cert.name}`,
                {
                    metricsNamespace: args.metrics.namespace,
                    statements: pulumi.all([channel.readStatements([`${folder}/*`]), repository?.arn]).apply(([read, repositoryArn]) => [
                        ...read,
                        ...(repositoryArn
                            ? [
                                  { Effect: "Allow" as const, Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
                                  {
                                      Effect: "Allow" as const,
                                      Action: ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                                      Resource: repositoryArn,
                                  },
                              ]
                            : []),
                    ]),
                },
                { parent: this },
            );
            const instance = new aws.ec2.Instance(
                `${name}-${cert.name}`,
                {
                    ami: ami.id,
                    instanceType: args.instanceType,
                    subnetId: pulumi.output(args.subnetIds).apply((ids) => ids[i % ids.length]),
                    vpcSecurityGroupIds: [args.securityGroupId],
                    iamInstanceProfile: role.profile.name,
                    // Egress only (Systems Manager, the store, image pulls): the security group admits nothing but the proxies.
                    associatePublicIpAddress: args.publicAddress,
                    ...hardenedInstanceSettings,
                    userData: channel.store.apply((store) => backendUserData(store, cert.name)),
                    userDataReplaceOnChange: true,
                    tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}-${cert.name}`, Role: "wss-edge-backend" },
                },
                {
                    parent: this,
                    // A new Amazon Linux release must not replace every backend at once; roll it
                    // with `pulumi up --replace` (see the change matrix in docs/aws.md). Backends
                    // go round the subnets by index: a subnet that appears later (a new zone's
                    // default subnet) would shift that round and replace them, so a backend keeps
                    // the subnet it was created in; a new or replaced one takes its turn's.
                    ignoreChanges: ["ami", "subnetId"],
                    // Role first (first boot reads the store with it), and an in-place change
                    // (instance type: stop and start) only once the backend before it is serving again.
                    dependsOn: [role, ...(previousGate ? [previousGate] : []), ...(args.after ?? [])],
                },
            );

            const settings = pulumi
                .all([this.imageReference, repository?.repositoryUrl, args.environment])
                .apply(([image, repositoryUrl, environment]) =>
                    [
                        `IMAGE=${image}`,
                        `REGISTRY=${repositoryUrl ? repositoryUrl.split("/")[0] : ""}`,
                        `BACKEND_NAME=${cert.name}`,
                        `PORT=${args.port}`,
                        ...Object.entries(environment).map(([key, value]) => `${key}=${value}`),
                        `METRICS_PORT=${backendHost.metricsPort}`,
                        "",
                    ].join("\n"),
                );
            const stored = pulumi
                .all([settings, cert.certificatePem, cert.privateKeyPem, args.caCertificatePem, args.metrics.environment])
                .apply(([env, certificatePem, privateKeyPem, caPem, metricsEnv]) =>
                    storedRelease("backend", {
                        "backend.env": env,
                        ...metricsFiles(metricsEnv),
                        ...Object.fromEntries(
                            Object.entries(backendTlsOf({ certificatePem, privateKeyPem }, caPem)).map(([file, pem]) => [
                                `tls/${file}`,
                                pem,
                            ]),
                        ),
                    }),
                );
            const releaseId = pulumi.unsecret(stored.apply((r) => r.id));
            const release = channel.publish(`${name}-${cert.name}-release`, folder, stored, { parent: this });
            // Public material only, readable in a preview: what a new run of the deploy is for.
            const triggers = pulumi
                .all([settings, cert.certificatePem, args.caCertificatePem, releaseId, instance.id])
                .apply(([env, certificatePem, caPem, id, instanceId]) => [
                    `app:${sha256(env)}`,
                    `certificates:${sha256(certificatePem + caPem)}`,
                    `release:${id}`,
                    `instance:${instanceId}`,
                ]);
            const deploy = channel.send(
                `${name}-${cert.name}-deploy`,
                {
                    document: channel.backendDocument,
                    parameters: { Backend: cert.name, Release: releaseId },
                    targets: { instanceIds: [instance.id] },
                    what: pulumi.interpolate`${cert.name}'s release ${releaseId.apply((id) => id.slice(0, 12))}`,
                    pointer: { folder, release: releaseId },
                    triggers,
                    dependsOn: [release, ...(previousGate ? [previousGate] : [])],
                },
                { parent: this },
            );
            const healthGate = channel.send(
                `${name}-${cert.name}-health`,
                {
                    document: channel.gateDocument,
                    parameters: { Backend: cert.name, Address: instance.privateIp, Port: String(args.port) },
                    targets: args.proxies,
                    what: `${cert.name}'s health gate`,
                    // Checked again after every deploy and every in-place change of the host.
                    triggers: pulumi.all([triggers, instance.instanceType]).apply(([deployed, type]) => [...deployed, `type:${type}`]),
                    dependsOn: [deploy, args.gateCredentials],
                },
                { parent: this },
            );
            this.backends.push({ name: cert.name, instance, privateIp: instance.privateIp, release, deploy, healthGate });
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
