import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { encodeDeployBundle, releaseFiles } from "../deploy/deployBundle";
import { cpuArchitecture, hardenedInstanceSettings } from "./instanceDefaults";

export interface EdgeProxyTlsFiles {
    readonly certificateChainPem: pulumi.Input<string>;
    readonly privateKeyPem: pulumi.Input<string>;
    readonly backendCaPem: pulumi.Input<string>;
    readonly proxyClientCertificatePem: pulumi.Input<string>;
    readonly proxyClientKeyPem: pulumi.Input<string>;
}

export interface EdgeProxyArgs {
    readonly instanceType: string;
    readonly subnetId: pulumi.Input<string>;
    readonly securityGroupId: pulumi.Input<string>;
    /** The stable public address, allocated before the PKI so the edge certificate can name it. */
    readonly address: aws.ec2.Eip;
    /** The complete nginx.conf from renderNginxConfig. */
    readonly nginxConfig: pulumi.Input<string>;
    readonly tls: EdgeProxyTlsFiles;
}

/** The deploy script, as shipped to the VM; the same file the local stack runs. */
export const deployScriptPath = path.join(__dirname, "..", "deploy", "deploy-edge-config.sh");
const adminUser = "admin"; // Debian's cloud images
const remoteScript = `/home/${adminUser}/wss-edge/deploy-edge-config.sh`;

/**
 * The fronting VM: Debian 12 with its NGINX 1.22 (the version every test here runs), an
 * Elastic IP, and a deploy that copies the deploy script, then runs it with the release
 * (config, certificates, keys) on standard input. A change to any of them redeploys in
 * place, with a reload, without replacing the VM.
 */
export class EdgeProxy extends pulumi.ComponentResource {
    readonly instance: aws.ec2.Instance;
    readonly publicIp: pulumi.Output<string>;
    /** Changes whenever the config, the certificates or the deploy script change. */
    readonly deployTriggers: pulumi.Output<string[]>;
    readonly deploy: command.remote.Command;

    constructor(name: string, args: EdgeProxyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:proxy:EdgeProxy", name, {}, opts);

        const deployKey = new tls.PrivateKey(`${name}-deploy`, { algorithm: "ED25519" }, { parent: this });
        const keyPair = new aws.ec2.KeyPair(`${name}-deploy`, { publicKey: deployKey.publicKeyOpenssh }, { parent: this });
        const architecture = cpuArchitecture(args.instanceType);
        const ami = aws.ec2.getAmiOutput(
            {
                owners: ["136693071363"], // Debian's official cloud images
                mostRecent: true,
                filters: [
                    { name: "name", values: [`debian-12-${architecture === "arm64" ? "arm64" : "amd64"}-*`] },
                    { name: "state", values: ["available"] },
                ],
            },
            { parent: this },
        );

        this.instance = new aws.ec2.Instance(
            name,
            {
                ami: ami.id,
                instanceType: args.instanceType,
                subnetId: args.subnetId,
                vpcSecurityGroupIds: [args.securityGroupId],
                keyName: keyPair.keyName,
                ...hardenedInstanceSettings,
                userData: proxyUserData,
                tags: { Name: `${pulumi.getProject()}-${pulumi.getStack()}-proxy`, Role: "wss-edge-proxy" },
            },
            // The AMI moves on; a newer Debian image must not replace a serving edge on its own.
            { parent: this, ignoreChanges: ["ami"] },
        );
        const association = new aws.ec2.EipAssociation(
            name,
            { allocationId: args.address.allocationId, instanceId: this.instance.id },
            { parent: this },
        );
        this.publicIp = args.address.publicIp;

        const connection: command.types.input.remote.ConnectionArgs = {
            host: args.address.publicIp,
            user: adminUser,
            privateKey: deployKey.privateKeyOpenssh,
            // A new VM takes a minute or two before SSH answers.
            dialErrorLimit: 40,
        };
        const scriptText = readFileSync(deployScriptPath, "utf8");
        const copyScript = new command.remote.CopyToRemote(
            `${name}-deploy-script`,
            { connection, source: new pulumi.asset.FileAsset(deployScriptPath), remotePath: remoteScript, triggers: [sha256(scriptText)] },
            { parent: this, dependsOn: [association] },
        );

        const tlsFiles = args.tls;
        const release = pulumi.secret(
            pulumi
                .all([args.nginxConfig, tlsFiles.certificateChainPem, tlsFiles.privateKeyPem, tlsFiles.backendCaPem, tlsFiles.proxyClientCertificatePem, tlsFiles.proxyClientKeyPem])
                .apply(([nginxConfig, certificateChainPem, privateKeyPem, backendCaPem, proxyClientCertificatePem, proxyClientKeyPem]) =>
                    encodeDeployBundle(releaseFiles({ nginxConfig, certificateChainPem, privateKeyPem, backendCaPem, proxyClientCertificatePem, proxyClientKeyPem })),
                ),
        );
        // Hashes of public material only, so the trigger diff in a preview stays readable.
        this.deployTriggers = pulumi
            .all([args.nginxConfig, pulumi.unsecret(pulumi.output(tlsFiles.certificateChainPem)), tlsFiles.backendCaPem, tlsFiles.proxyClientCertificatePem])
            .apply(([config, chain, backendCa, clientCert]) => [`config:${sha256(config)}`, `certificates:${sha256(chain + backendCa + clientCert)}`, `script:${sha256(scriptText)}`]);

        this.deploy = new command.remote.Command(
            `${name}-deploy`,
            {
                connection,
                create: `cloud-init status --wait >/dev/null; sudo WSS_EDGE_SYSTEMD_UNIT=nginx bash ${remoteScript}`,
                stdin: release,
                triggers: this.deployTriggers,
                logging: "stdoutAndStderr",
            },
            { parent: this, dependsOn: [copyScript] },
        );

        this.registerOutputs({ publicIp: this.publicIp, instanceId: this.instance.id, deployTriggers: this.deployTriggers });
    }
}

function sha256(text: string): string {
    return createHash("sha256").update(text).digest("hex");
}

/**
 * First boot: NGINX from Debian, run by systemd from the deploy's `current` release, with
 * the descriptor and network limits tens of thousands of sockets need. NGINX starts with
 * the first deploy; until then nothing listens.
 */
const proxyUserData = `#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q nginx-light
systemctl disable --now nginx
install -d -m 0700 /etc/wss-edge
install -d /etc/systemd/system/nginx.service.d
cat > /etc/systemd/system/nginx.service.d/wss-edge.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/sbin/nginx -t -q -c /etc/wss-edge/current/nginx.conf
ExecStart=
ExecStart=/usr/sbin/nginx -c /etc/wss-edge/current/nginx.conf
ExecReload=
ExecReload=/usr/sbin/nginx -c /etc/wss-edge/current/nginx.conf -s reload
LimitNOFILE=140000
UNIT
cat > /etc/sysctl.d/90-wss-edge.conf <<'SYSCTL'
# Each WebSocket holds an ephemeral port towards its backend: widen the range.
net.ipv4.ip_local_port_range = 1024 65000
net.core.somaxconn = 4096
net.ipv4.tcp_max_syn_backlog = 8192
fs.file-max = 1000000
SYSCTL
sysctl --system >/dev/null
systemctl daemon-reload
systemctl enable nginx
`;
