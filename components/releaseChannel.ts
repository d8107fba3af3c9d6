import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { healthGateTimeoutSeconds } from "../host/backendHost";
import { edgeDeployEnvironment } from "../host/proxyHost";
import {
    backendFleetDocument,
    backendReleaseDocument,
    type CommandDocument,
    currentKey,
    edgeReleaseDocument,
    healthGateDocument,
    type ReleaseStore,
    releaseKey,
    type StoredRelease,
    s3Url,
} from "../host/releaseChannel";
import { packageFile } from "./packageFiles";

export interface ReleaseChannelArgs {
    /** The name the backends' certificates carry, which each health gate checks. */
    readonly backendServerName: string;
}

/** Which VMs a command runs on: instances by ID, in this order, or the InService proxies of an Auto Scaling group. */
export type CommandTargets = { readonly instanceIds: pulumi.Input<string>[] } | { readonly autoScalingGroup: pulumi.Input<string> };

export interface SendArgs {
    readonly document: aws.ssm.Document;
    readonly parameters: pulumi.Input<Record<string, pulumi.Input<string>>>;
    readonly targets: CommandTargets;
    /** What runs, for the messages. */
    readonly what: pulumi.Input<string>;
    /** A release's folder whose `current` is set to `release` first (and set back on failure). */
    readonly pointer?: { readonly folder: string; readonly release: pulumi.Input<string> };
    /** Run again when any of these change (and whenever the targets do). */
    readonly triggers: pulumi.Input<pulumi.Input<string>[]>;
    readonly dependsOn?: pulumi.Input<pulumi.Input<pulumi.Resource>[]>;
}

/**
 * How releases reach the VMs with no inbound port: a release store (S3, every object encrypted
 * with the stack's own KMS key, no public access, TLS only), four Systems Manager command
 * documents (apply an edge release, apply a backend release, a backend's health gate, tell a
 * backend the fleet), and
 * `send`, which runs a document on VMs one at a time from where `pulumi up` runs and waits for
 * each (deploy/ssm-send.sh). Run Command, not a State Manager association: `pulumi up` must
 * wait for each VM's result in turn and fail with its message, while an association applies on
 * its own schedule to all targets and reports elsewhere; what an association would add (a new
 * VM applying the current release) first boot already does.
 */
export class ReleaseChannel extends pulumi.ComponentResource {
    readonly key: aws.kms.Key;
    readonly bucket: aws.s3.Bucket;
    readonly store: pulumi.Output<ReleaseStore>;
    readonly edgeDocument: aws.ssm.Document;
    readonly backendDocument: aws.ssm.Document;
    readonly gateDocument: aws.ssm.Document;
    readonly fleetDocument: aws.ssm.Document;
    /** The bucket's settings: objects are written only once these apply. */
    private readonly guards: pulumi.Resource[];
    readonly region: pulumi.Output<string>;

    constructor(name: string, args: ReleaseChannelArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:releases:ReleaseChannel", name, {}, opts);
        const parent = { parent: this };
        this.region = aws.getRegionOutput({}, parent).region;

        this.key = new aws.kms.Key(
            name,
            {
                description: `${pulumi.getProject()}-${pulumi.getStack()}: the edge's releases (keys and certificates)`,
                enableKeyRotation: true,
            },
            parent,
        );
        // Emptied with the stack: every object is a release `pulumi up` can write again.
        this.bucket = new aws.s3.Bucket(name, { forceDestroy: true }, parent);
        const encryption = new aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            {
                bucket: this.bucket.id,
                rules: [
                    {
                        applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: this.key.arn },
                        bucketKeyEnabled: true,
                    },
                ],
            },
            parent,
        );
        const publicAccess = new aws.s3.BucketPublicAccessBlock(
            name,
            { bucket: this.bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
            parent,
        );
        const ownership = new aws.s3.BucketOwnershipControls(
            name,
            { bucket: this.bucket.id, rule: { objectOwnership: "BucketOwnerEnforced" } },
            parent,
        );
        const tlsOnly = new aws.s3.BucketPolicy(
            name,
            {
                bucket: this.bucket.id,
                policy: this.bucket.arn.apply((arn) =>
                    JSON.stringify({
                        Version: "2012-10-17",
                        Statement: [
                            {
                                Sid: "TlsOnly",
                                Effect: "Deny",
                                Principal: "*",
                                Action: "s3:*",
                                Resource: [arn, `${arn}/*`],
                                Condition: { Bool: { "aws:SecureTransport": "false" } },
                            },
                        ],
                    }),
                ),
            },
            { parent: this, dependsOn: [publicAccess] },
        );
        this.guards = [encryption, publicAccess, ownership, tlsOnly];

        this.store = pulumi.all([this.bucket.bucket, this.region]).apply(([bucket, region]) => ({ bucket, region }));
        const document = (suffix: string, content: (store: ReleaseStore) => CommandDocument) =>
            new aws.ssm.Document(
                `${name}-${suffix}`,
                {
                    documentType: "Command",
                    documentFormat: "JSON",
                    content: this.store.apply((store) => JSON.stringify(content(store), null, 2)),
                },
                parent,
            );
        this.edgeDocument = document("edge", (store) => edgeReleaseDocument(store, edgeDeployEnvironment));
        this.backendDocument = document("backend", (store) => backendReleaseDocument(store));
        this.gateDocument = document("gate", (store) => healthGateDocument(store, args.backendServerName, healthGateTimeoutSeconds));
        this.fleetDocument = document("fleet", () => backendFleetDocument());

        this.registerOutputs({ bucket: this.bucket.bucket, keyArn: this.key.arn });
    }

    /** Writes one release into `folder`, under the key its content names. */
    publish(
        name: string,
        folder: string,
        release: pulumi.Output<StoredRelease>,
        opts?: pulumi.CustomResourceOptions,
    ): aws.s3.BucketObjectv2 {
        return this.put(
            name,
            release.apply((r) => releaseKey(folder, r.id)),
            release.apply((r) => r.content),
            opts,
        );
    }

    /** Writes one object (secret content) once the bucket's encryption and access settings apply. */
    put(
        name: string,
        key: pulumi.Input<string>,
        content: pulumi.Input<string>,
        opts?: pulumi.CustomResourceOptions,
    ): aws.s3.BucketObjectv2 {
        return new aws.s3.BucketObjectv2(
            name,
            { bucket: this.bucket.id, key, content: pulumi.secret(content), contentType: "text/plain" },
            // Created before the old object goes, said explicitly: the bridge would otherwise delete
            // first, as for any explicitly set auto-nameable field (docs/engine-rules.md, rule b),
            // leaving `current` naming a release that is gone until the new one is written. Release
            // keys differ by content, so the two never collide.
            { parent: this, ...opts, dependsOn: this.guards, deleteBeforeReplace: false },
        );
    }

    /** Read access to these folders of the store, for an instance role. */
    readStatements(keys: readonly string[]): pulumi.Output<aws.iam.PolicyStatement[]> {
        return pulumi.all([this.bucket.arn, this.key.arn]).apply(([bucketArn, keyArn]): aws.iam.PolicyStatement[] => [
            { Effect: "Allow", Action: ["s3:GetObject"], Resource: keys.map((key) => `${bucketArn}/${key}`) },
            { Effect: "Allow", Action: ["kms:Decrypt"], Resource: keyArn },
        ]);
    }

    /**
     * Runs `document` on the targets, one VM at a time, from where `pulumi up` runs, and waits for
     * each: the first failure fails the `up` with the VM's own message (deploy/ssm-send.sh).
     */
    send(name: string, args: SendArgs, opts?: pulumi.CustomResourceOptions): command.local.Command {
        const targets =
            "instanceIds" in args.targets
                ? pulumi.all(args.targets.instanceIds).apply((ids) => ids.join(" "))
                : pulumi.interpolate`asg:${args.targets.autoScalingGroup}`;
        const pointer = args.pointer;
        return new command.local.Command(
            name,
            {
                create: `bash ${packageFile("deploy/ssm-send.sh")}`,
                environment: {
                    WSS_EDGE_REGION: this.region,
                    WSS_EDGE_DOCUMENT: args.document.name,
                    WSS_EDGE_PARAMETERS: pulumi
                        .output(args.parameters)
                        .apply((parameters) => JSON.stringify(Object.fromEntries(Object.entries(parameters).map(([k, v]) => [k, [v]])))),
                    WSS_EDGE_TARGETS: targets,
                    WSS_EDGE_WHAT: args.what,
                    ...(pointer
                        ? {
                              WSS_EDGE_POINTER: pulumi.interpolate`${this.store.apply((store) => s3Url(store, currentKey(pointer.folder)))}`,
                              WSS_EDGE_RELEASE: pointer.release,
                          }
                        : {}),
                },
                triggers: pulumi
                    .all([args.triggers, targets, args.document.latestVersion])
                    .apply(([triggers, t, version]) => [...triggers, `targets:${t}`, `document:${version}`]),
                logging: "stdoutAndStderr",
            },
            { parent: this, ...opts, dependsOn: args.dependsOn },
        );
    }
}
