import * as aws from "@pulumi/aws";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { backendTlsFiles } from "../pki/certificateLayout";
import { IssuedCertificate } from "./edgePki";
import { cpuArchitecture, hardenedInstanceSettings } from "./instanceDefaults";

export interface BackendFleetArgs {
    readonly instanceType: string;
    readonly port: number;
    /** Instances are spread over these subnets (one per availability zone) in turn. */
    readonly subnetIds: pulumi.Input<string[]>;
    readonly securityGroupId: pulumi.Input<string>;
    /** One certificate per backend; the fleet has as many instances as certificates. */
    readonly certificates: readonly IssuedCertificate[];
    /** The CA the proxy's client certificate must chain to. */
    readonly clientCaCertificatePem: pulumi.Input<string>;
    /** Run this image instead of building `backend/` into an ECR repository. */
    readonly image?: string;
    readonly pingIntervalSeconds: number;
}

/**
 * N instances running the backend WebSocket app as a container. The image is built from
 * `backend/` and pushed to an ECR repository of the stack's own, unless the user names an
 * image. Certificates reach the instances through SSM parameters (keys as SecureString)
 * that only the fleet's role may read; nothing secret is in user data.
 */
export class BackendFleet extends pulumi.ComponentResource {
    readonly instances: aws.ec2.Instance[];
    readonly privateIps: pulumi.Output<string>[];
    /** The image the instances run (a digest when built here). */
    readonly imageReference: pulumi.Output<string>;
    readonly repository?: aws.ecr.Repository;

    constructor(name: string, args: BackendFleetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:backends:BackendFleet", name, {}, opts);
        const architecture = cpuArchitecture(args.instanceType);
        const stack = pulumi.getStack();

        const policyStatements: pulumi.Input<aws.iam.PolicyStatement>[] = [];
        if (args.image === undefined) {
            this.repository = new aws.ecr.Repository(
                `${name}-app`,
                // Instances run the pushed digest, never the tag, so a moving tag is safe.
                { imageTagMutability: "MUTABLE", imageScanningConfiguration: { scanOnPush: true }, forceDelete: true },
                { parent: this },
            );
            const credentials = aws.ecr.getAuthorizationTokenOutput({ registryId: this.repository.registryId }, { parent: this });
            const appDir = path.join(__dirname, "..", "backend");
            const image = new docker.Image(
                `${name}-app`,
                {
                    build: { context: appDir, platform: `linux/${architecture === "arm64" ? "arm64" : "amd64"}` },
                    imageName: pulumi.interpolate`${this.repository.repositoryUrl}:backend`,
                    registry: { server: this.repository.repositoryUrl, username: credentials.userName, password: pulumi.secret(credentials.password) },
                    // Pull-request previews need no Docker engine and stay fast.
                    buildOnPreview: false,
                },
                { parent: this },
            );
            this.imageReference = image.repoDigest;
            policyStatements.push(
                { Effect: "Allow", Action: ["ecr:GetAuthorizationToken"], Resource: "*" },
                { Effect: "Allow", Action: ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], Resource: this.repository.arn },
            );
        } else {
            this.imageReference = pulumi.output(args.image);
        }

        const parameterPrefix = `/${pulumi.getProject()}/${stack}/${name}`;
        const caParameter = new aws.ssm.Parameter(
            `${name}-client-ca`,
            { name: `${parameterPrefix}/${backendTlsFiles.clientCa}`, type: "String", value: args.clientCaCertificatePem },
            { parent: this },
        );
        const parameters = args.certificates.map((cert) => ({
            certificate: new aws.ssm.Parameter(
                `${name}-${cert.name}-certificate`,
                { name: `${parameterPrefix}/${cert.name}/${backendTlsFiles.certificate}`, type: "String", value: cert.certificatePem },
                { parent: this },
            ),
            key: new aws.ssm.Parameter(
                `${name}-${cert.name}-key`,
                { name: `${parameterPrefix}/${cert.name}/${backendTlsFiles.key}`, type: "SecureString", value: cert.privateKeyPem },
                { parent: this },
            ),
        }));
        policyStatements.push({
            Effect: "Allow",
            Action: ["ssm:GetParameter"],
            Resource: [caParameter.arn, ...parameters.flatMap((p) => [p.certificate.arn, p.key.arn])],
        });

        const role = new aws.iam.Role(
            `${name}-instance`,
            { assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "ec2.amazonaws.com" }) },
            { parent: this },
        );
        new aws.iam.RolePolicy(`${name}-instance`, { role: role.id, policy: { Version: "2012-10-17", Statement: policyStatements } }, { parent: this });
        const profile = new aws.iam.InstanceProfile(`${name}-instance`, { role: role.name }, { parent: this });

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

        this.instances = args.certificates.map(
            (cert, i) =>
                new aws.ec2.Instance(
                    `${name}-${cert.name}`,
                    {
                        ami: ami.id,
                        instanceType: args.instanceType,
                        subnetId: pulumi.output(args.subnetIds).apply((ids) => ids[i % ids.length]),
                        vpcSecurityGroupIds: [args.securityGroupId],
                        iamInstanceProfile: profile.name,
                        // Egress only (image pulls, SSM): the security group admits nothing but the proxy.
                        associatePublicIpAddress: true,
                        ...hardenedInstanceSettings,
                        userData: backendUserData({
                            name: cert.name,
                            port: args.port,
                            image: this.imageReference,
                            registry: this.repository?.repositoryUrl,
                            parameterPrefix: `${parameterPrefix}`,
                            pingIntervalSeconds: args.pingIntervalSeconds,
                        }),
                        userDataReplaceOnChange: true,
                        tags: { Name: `${pulumi.getProject()}-${stack}-${cert.name}`, Role: "wss-edge-backend" },
                    },
                    { parent: this, dependsOn: [...parameters.flatMap((p) => [p.certificate, p.key]), caParameter] },
                ),
        );
        this.privateIps = this.instances.map((instance) => instance.privateIp);

        this.registerOutputs({ privateIps: this.privateIps, imageReference: this.imageReference, repositoryUrl: this.repository?.repositoryUrl });
    }
}

interface BackendBoot {
    readonly name: string;
    readonly port: number;
    readonly image: pulumi.Input<string>;
    readonly registry?: pulumi.Input<string>;
    readonly parameterPrefix: string;
    readonly pingIntervalSeconds: number;
}

/** Boot script: Docker, the certificates from SSM, then the app. Holds parameter names only. */
function backendUserData(boot: BackendBoot): pulumi.Output<string> {
    return pulumi.all([boot.image, boot.registry]).apply(([image, registry]) =>
        [
            "#!/bin/bash",
            "set -euo pipefail",
            "dnf install -y docker",
            "systemctl enable --now docker",
            "tls=/etc/wss-backend/tls",
            'install -d -m 0750 -o 1000 -g 1000 "$tls"',
            "fetch() { aws ssm get-parameter --with-decryption --name \"$1\" --query Parameter.Value --output text; }",
            `fetch "${boot.parameterPrefix}/${boot.name}/${backendTlsFiles.certificate}" > "$tls/${backendTlsFiles.certificate}"`,
            `fetch "${boot.parameterPrefix}/${boot.name}/${backendTlsFiles.key}" > "$tls/${backendTlsFiles.key}"`,
            `fetch "${boot.parameterPrefix}/${backendTlsFiles.clientCa}" > "$tls/${backendTlsFiles.clientCa}"`,
            'chown 1000:1000 "$tls"/* && chmod 0600 "$tls/server.key"',
            ...(registry
                ? [`aws ecr get-login-password | docker login --username AWS --password-stdin "${registry.split("/")[0]}"`]
                : []),
            [
                "docker run -d --name wss-backend --restart=always --stop-timeout 10",
                `-p ${boot.port}:${boot.port}`,
                `-e PORT=${boot.port} -e BACKEND_NAME=${boot.name} -e PING_INTERVAL_SECONDS=${boot.pingIntervalSeconds}`,
                '-v "$tls:/etc/wss-backend/tls:ro"',
                `"${image}"`,
            ].join(" "),
            "",
        ].join("\n"),
    );
}
