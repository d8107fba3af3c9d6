// The AWS resource graph, proven under Pulumi's mocks: what `pulumi up` would register.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { pulumiConfigBlock, secretSettingKeys } from "../settings/settingsTable";
import {
    bundleFiles,
    mockBackendIps,
    mockEdgeIp,
    named,
    ofType,
    type RegisteredResource,
    resolveOutput,
    runEdgeProgram,
    secretness,
    waitForRPCs,
} from "./support/pulumiProgram";
import { projectConfigError } from "./support/pulumiProjectConfig";

const devConfig = {};
/** The files of the release object `name` in the store. */
const storedFiles = (resources: RegisteredResource[], name: string) => bundleFiles(named(resources, name).inputs.content);
/** The instance (not its Elastic IP association) named `name`. */
const instanceNamed = (resources: RegisteredResource[], name: string) =>
    ofType(resources, "aws:ec2/instance:Instance").find((r) => r.name === name) ?? assert.fail(`no instance ${name}`);
const instances = (resources: RegisteredResource[]) => ofType(resources, "aws:ec2/instance:Instance");

const securityGroup = (resources: RegisteredResource[], suffix: string) => {
    const found = ofType(resources, "aws:ec2/securityGroup:SecurityGroup").filter((r) => r.name.endsWith(suffix));
    assert.equal(found.length, 1, `one ${suffix} security group`);
    return found[0];
};

describe("the AWS stack under mocks, default dev config", async () => {
    const run = await runEdgeProgram(devConfig);
    const { resources, outputs } = run;

    it("registers three backend instances and one proxy instance", () => {
        const all = instances(resources);
        assert.deepEqual(all.map((r) => r.name).sort(), [
            "edge-backends-backend-1",
            "edge-backends-backend-2",
            "edge-backends-backend-3",
            "edge-proxy",
        ]);
    });

    it("spreads the backends over the availability zones' subnets in a stable order", async () => {
        const subnets = await Promise.all(
            instances(resources)
                .filter((r) => r.name.startsWith("edge-backends"))
                .map((r) => resolveOutput(r.inputs.subnetId)),
        );
        assert.deepEqual(subnets, ["subnet-a", "subnet-b", "subnet-c"]);
    });

    it("admits exactly 443 from everywhere and NGINX's metrics from its own group only on the proxy; no SSH; no port 80 without the redirect", () => {
        const proxy = securityGroup(resources, "-proxy");
        assert.deepEqual(
            proxy.inputs.ingress.map((r: any) => ({
                port: r.fromPort,
                to: r.toPort,
                protocol: r.protocol,
                v4: r.cidrBlocks,
                v6: r.ipv6CidrBlocks,
                groups: r.securityGroups,
                self: r.self,
            })),
            [
                { port: 443, to: 443, protocol: "tcp", v4: ["0.0.0.0/0"], v6: ["::/0"], groups: undefined, self: undefined },
                { port: 9113, to: 9113, protocol: "tcp", v4: undefined, v6: undefined, groups: undefined, self: true },
            ],
        );
    });

    it("admits only the backend port and the app's metrics, only from the proxy's security group, on the backends; no SSH", () => {
        const backend = securityGroup(resources, "-backend");
        assert.deepEqual(
            backend.inputs.ingress.map((r: any) => ({
                port: r.fromPort,
                to: r.toPort,
                protocol: r.protocol,
                groups: r.securityGroups,
                v4: r.cidrBlocks,
                v6: r.ipv6CidrBlocks,
            })),
            [
                { port: 8443, to: 8443, protocol: "tcp", groups: ["edge-proxy-id"], v4: undefined, v6: undefined },
                { port: 9464, to: 9464, protocol: "tcp", groups: ["edge-proxy-id"], v4: undefined, v6: undefined },
            ],
        );
    });

    it("requires IMDSv2 and encrypts the root volume of every instance", () => {
        for (const instance of instances(resources)) {
            assert.equal(instance.inputs.metadataOptions.httpTokens, "required", instance.name);
            assert.equal(instance.inputs.rootBlockDevice.encrypted, true, instance.name);
        }
    });

    it("issues an ECDSA P-256 CA, an edge certificate for the Elastic IP, one certificate per backend and a client certificate", () => {
        const keys = ofType(resources, "tls:index/privateKey:PrivateKey");
        assert.equal(keys.length, 6, "CA, edge, three backends, proxy client: no SSH keys");
        assert.ok(keys.every((k) => k.inputs.algorithm === "ECDSA" && k.inputs.ecdsaCurve === "P256"));
        assert.deepEqual(
            ofType(resources, "tls:index/selfSignedCert:SelfSignedCert").map((r) => [r.name, r.inputs.isCaCertificate]),
            [["edge-ca", true]],
        );
        const requests = Object.fromEntries(ofType(resources, "tls:index/certRequest:CertRequest").map((r) => [r.name, r.inputs]));
        assert.deepEqual(Object.keys(requests).sort(), [
            "edge-backend-1",
            "edge-backend-2",
            "edge-backend-3",
            "edge-edge",
            "edge-proxy-client",
        ]);
        assert.deepEqual(requests["edge-edge"].ipAddresses, [mockEdgeIp]);
        assert.ok(requests["edge-backend-2"].dnsNames.includes("backends.wss-edge.internal"));
        const usages = Object.fromEntries(
            ofType(resources, "tls:index/locallySignedCert:LocallySignedCert").map((r) => [r.name, r.inputs.allowedUses]),
        );
        assert.ok(usages["edge-proxy-client"].includes("client_auth"));
        assert.ok(usages["edge-backend-1"].includes("server_auth") && !usages["edge-backend-1"].includes("client_auth"));
    });

    it("builds the backend image into the stack's own ECR repository, which keeps the 10 newest, and deploys it by digest", () => {
        assert.equal(ofType(resources, "aws:ecr/repository:Repository").length, 1);
        const [image] = ofType(resources, "docker:index/image:Image");
        assert.equal(image.inputs.build.context, "backend");
        assert.equal(image.inputs.build.platform, "linux/amd64");
        const lifecycle = JSON.parse(ofType(resources, "aws:ecr/lifecyclePolicy:LifecyclePolicy")[0].inputs.policy);
        assert.deepEqual(
            lifecycle.rules.map((r: any) => [r.selection.tagStatus, r.selection.countType, r.selection.countNumber]),
            [
                ["untagged", "sinceImagePushed", 7],
                ["any", "imageCountMoreThan", 10],
            ],
        );
        const env = storedFiles(resources, "edge-backends-backend-1-release")["backend.env"];
        assert.match(env, /^IMAGE=123456789012\.dkr\.ecr\.eu-west-1\.amazonaws\.com\/edge-backends-app@sha256:[0-9a-f]{64}$/m);
        assert.match(env, /^REGISTRY=123456789012\.dkr\.ecr\.eu-west-1\.amazonaws\.com$/m);
        assert.match(env, /^BACKEND_NAME=backend-1$/m);
        assert.match(env, /^PING_INTERVAL_SECONDS=30$/m);
    });

    it("lets each backend's role read its own releases, decrypt them and pull from its repository, and boots it only once the role exists", async () => {
        for (const name of ["backend-1", "backend-2", "backend-3"]) {
            const policy =
                ofType(resources, "aws:iam/rolePolicy:RolePolicy").find((p) => p.name === `edge-backends-${name}`) ?? assert.fail(name);
            const statements = JSON.parse(await resolveOutput<string>(policy.inputs.policy)).Statement;
            assert.deepEqual(
                statements.map((s: any) => [s.Action, s.Resource]),
                [
                    [["s3:GetObject"], [`arn:aws:s3:::edge-releases/backends/${name}/*`]],
                    [["kms:Decrypt"], "arn:aws:kms:eu-west-1:123456789012:key/edge-releases"],
                    [["ecr:GetAuthorizationToken"], "*"],
                    [
                        ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                        "arn:aws:ecr:eu-west-1:123456789012:repository/edge-backends-app",
                    ],
                    // Its metrics, to the edge's namespace only (test/capacityWatch.test.ts).
                    ["cloudwatch:PutMetricData", "*"],
                ],
                `${name} reads its own folder only: no other backend's key`,
            );
            const attachment =
                ofType(resources, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").find(
                    (a) => a.name === `edge-backends-${name}-ssm`,
                ) ?? assert.fail(name);
            assert.equal(attachment.inputs.policyArn, "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore");
            for (const dependency of [policy, attachment])
                assert.ok(
                    instanceNamed(resources, `edge-backends-${name}`).dependencies.includes(dependency.urn),
                    `${name} waits for ${dependency.type}`,
                );
        }
    });

    it("keeps private keys secret: TLS keys travel only in the store's objects, as secrets; no command, user data or output holds one", async () => {
        const objects = ofType(resources, "aws:s3/bucketObjectv2:BucketObjectv2");
        assert.deepEqual(objects.map((o) => o.name).sort(), [
            "edge-backends-backend-1-release",
            "edge-backends-backend-2-release",
            "edge-backends-backend-3-release",
            "edge-deploy-release",
            "edge-gate-credentials",
        ]);
        for (const object of objects)
            assert.ok(object.secretInputs.has("content"), `${object.name}: its content reaches the provider as a secret`);
        const edgeRelease = storedFiles(resources, "edge-deploy-release");
        assert.match(edgeRelease["nginx.conf"], /^# wss-edge/);
        assert.match(edgeRelease["tls/edge.key"], /PRIVATE KEY/);
        assert.match(
            edgeRelease["backend-health-agent.sh"],
            /^#!\/usr\/bin\/env bash/,
            "the release carries the health agent it runs with",
        );
        assert.match(edgeRelease["deploy-edge-config.sh"], /^#!\/usr\/bin\/env bash/, "and the deploy script that applies it");
        assert.match(storedFiles(resources, "edge-backends-backend-2-release")["tls/server.key"], /PRIVATE KEY/);
        assert.deepEqual(Object.keys(storedFiles(resources, "edge-gate-credentials")).sort(), ["ca.crt", "client.crt", "client.key"]);
        for (const command of ofType(resources, "command:local:Command"))
            assert.doesNotMatch(JSON.stringify(command.inputs), /PRIVATE KEY/, command.name);
        for (const instance of instances(resources))
            assert.doesNotMatch(await resolveOutput<string>(instance.inputs.userData), /PRIVATE KEY/, instance.name);
        for (const [name, value] of Object.entries(outputs)) {
            assert.doesNotMatch(JSON.stringify(value) ?? "", /PRIVATE KEY/, `output ${name}`);
        }
    });

    it("stores releases under the hash of their bytes, encrypted with the stack's own key, in a bucket with no public access and TLS only", async () => {
        const release = named(resources, "edge-deploy-release");
        const id = createHash("sha256").update(release.inputs.content).digest("hex");
        assert.equal(await resolveOutput(release.inputs.key), `edge/releases/${id}`);
        assert.equal(outputs.edgeRelease, id);
        const [encryption] = ofType(resources, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration");
        assert.deepEqual(encryption.inputs.rules[0].applyServerSideEncryptionByDefault, {
            sseAlgorithm: "aws:kms",
            kmsMasterKeyId: "arn:aws:kms:eu-west-1:123456789012:key/edge-releases",
        });
        assert.equal(ofType(resources, "aws:kms/key:Key")[0].inputs.enableKeyRotation, true);
        const [block] = ofType(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock");
        assert.deepEqual(
            [
                block.inputs.blockPublicAcls,
                block.inputs.blockPublicPolicy,
                block.inputs.ignorePublicAcls,
                block.inputs.restrictPublicBuckets,
            ],
            [true, true, true, true],
        );
        const policy = JSON.parse(ofType(resources, "aws:s3/bucketPolicy:BucketPolicy")[0].inputs.policy);
        assert.deepEqual(policy.Statement[0].Condition, { Bool: { "aws:SecureTransport": "false" } });
        for (const object of ofType(resources, "aws:s3/bucketObjectv2:BucketObjectv2"))
            for (const guard of [encryption, block])
                assert.ok(object.dependencies.includes(guard.urn), `${object.name} is written only once ${guard.type} applies`);
    });

    it("marks every issued private key as a Pulumi secret and the CA certificate as plain", async () => {
        const { EdgePki } = await import("../components/edgePki");
        const { edgePkiSpec } = await import("../pki/pkiSpec");
        const pki = new EdgePki("secretness", {
            spec: edgePkiSpec({
                edgeDnsNames: ["ws.example.com"],
                edgeIpAddresses: [],
                backendCount: 1,
                userSuppliedEdgeCertificate: false,
            }),
        });
        assert.equal(await secretness(pki.edgePrivateKeyPem), true);
        assert.equal(await secretness(pki.backendCertificates[0].privateKeyPem), true);
        assert.equal(await secretness(pki.proxyClientCertificate.privateKeyPem), true);
        assert.equal(await secretness(pki.caCertificatePem), false);
        await waitForRPCs();
    });

    it("sends the edge release through Systems Manager: the proxy by its instance ID, the release by its id, `current` moved first", async () => {
        const deploy = named(resources, "edge-deploy");
        assert.equal(deploy.inputs.create, "bash deploy/ssm-send.sh");
        const env = deploy.inputs.environment;
        assert.equal(env.WSS_EDGE_REGION, "eu-west-1");
        assert.equal(env.WSS_EDGE_DOCUMENT, "edge-releases-edge-id");
        assert.equal(env.WSS_EDGE_TARGETS, "edge-proxy-id");
        assert.deepEqual(JSON.parse(env.WSS_EDGE_PARAMETERS), { Release: [outputs.edgeRelease] });
        assert.equal(env.WSS_EDGE_POINTER, "s3://edge-releases/edge/current");
        assert.equal(env.WSS_EDGE_RELEASE, outputs.edgeRelease);
        assert.deepEqual(
            deploy.inputs.triggers.map((t: string) => t.split(":")[0]),
            ["config", "certificates", "agent", "release", "targets", "document"],
        );
        assert.ok(!deploy.secretInputs.has("triggers"), "the triggers stay readable in a preview diff");
        assert.ok(deploy.dependencies.includes(named(resources, "edge-deploy-release").urn), "the release is in the store first");
        const document = JSON.parse(named(resources, "edge-releases-edge").inputs.content);
        assert.equal(document.parameters.Release.allowedPattern, "^([0-9a-f]{64}|current)$");
        const [waitForBoot, apply] = document.mainSteps[0].inputs.runCommand;
        assert.match(waitForBoot, /cloud-init status --wait/);
        assert.match(apply, /^env WSS_EDGE_REGION=eu-west-1 WSS_EDGE_ROOT=\/etc\/wss-edge WSS_EDGE_SYSTEMD_UNIT=nginx bash -c '/);
        assert.match(apply, /' apply-release edge s3:\/\/edge-releases\/edge '\{\{ Release \}\}'$/);
    });

    it("gives the proxy an identity that reads the edge's folder of the store and nothing else, with Systems Manager's agent installed at first boot", async () => {
        const policy = ofType(resources, "aws:iam/rolePolicy:RolePolicy").find((p) => p.name === "edge-proxy") ?? assert.fail("policy");
        const statements = JSON.parse(await resolveOutput<string>(policy.inputs.policy)).Statement;
        assert.deepEqual(
            statements.map((s: any) => [s.Action, s.Resource]),
            [
                [["s3:GetObject"], ["arn:aws:s3:::edge-releases/edge/*"]],
                [["kms:Decrypt"], "arn:aws:kms:eu-west-1:123456789012:key/edge-releases"],
                ["cloudwatch:PutMetricData", "*"],
            ],
        );
        const proxy = instanceNamed(resources, "edge-proxy");
        assert.equal(proxy.inputs.iamInstanceProfile, "edge-proxy", "the proxy role's instance profile");
        assert.equal(proxy.inputs.keyName, undefined, "no key pair: nothing logs in over SSH");
        const userData = await resolveOutput<string>(proxy.inputs.userData);
        assert.match(userData, /amazon-ssm-eu-west-1\/latest\/debian_\$\{arch\}\/amazon-ssm-agent\.deb/);
        assert.match(userData, /apply-release edge s3:\/\/edge-releases\/edge current/);
        assert.ok(
            userData.indexOf('wss-edge-install-ssm-agent"]') < userData.indexOf('wss-edge-first-boot"]'),
            "the agent first, so Session Manager reaches a VM whose later steps failed",
        );
    });

    it("deploys each backend through Systems Manager by its instance ID, and gates it from the proxy over mutual TLS", () => {
        for (const [i, name] of ["backend-1", "backend-2", "backend-3"].entries()) {
            const deploy = named(resources, `edge-backends-${name}-deploy`);
            assert.equal(deploy.inputs.environment.WSS_EDGE_TARGETS, `edge-backends-${name}-id`);
            assert.equal(deploy.inputs.environment.WSS_EDGE_DOCUMENT, "edge-releases-backend-id");
            assert.equal(deploy.inputs.environment.WSS_EDGE_POINTER, `s3://edge-releases/backends/${name}/current`);
            assert.deepEqual(Object.keys(JSON.parse(deploy.inputs.environment.WSS_EDGE_PARAMETERS)), ["Backend", "Release"]);
            const gate = named(resources, `edge-backends-${name}-health`);
            assert.equal(gate.inputs.environment.WSS_EDGE_TARGETS, "edge-proxy-id", "the gate runs on the proxy");
            assert.deepEqual(JSON.parse(gate.inputs.environment.WSS_EDGE_PARAMETERS), {
                Backend: [name],
                Address: [mockBackendIps[i]],
                Port: ["8443"],
            });
            assert.ok(gate.dependencies.includes(named(resources, "edge-gate-credentials").urn), "its credentials are in the store first");
        }
        const gateDocument = JSON.parse(named(resources, "edge-releases-gate").inputs.content);
        assert.match(
            gateDocument.mainSteps[0].inputs.runCommand[1],
            /s3:\/\/edge-releases\/edge\/gate "\$credentials"[\s\S]*bash -c '[\s\S]*' backend-health-gate '\{\{ Backend \}\}' '\{\{ Address \}\}' '\{\{ Port \}\}' backends\.wss-edge\.internal 180 <"\$credentials"/,
        );
    });

    it("moves the Elastic IP to the proxy only after the deploy that checked it serves", () => {
        const association = ofType(resources, "aws:ec2/eipAssociation:EipAssociation")[0];
        assert.equal(association.inputs.instanceId, "edge-proxy-id");
        assert.equal(association.inputs.allowReassociation, true);
        assert.ok(association.dependencies.includes(named(resources, "edge-deploy").urn));
    });

    it("rolls the backends one at a time, and deploys the edge's config only after every backend passed its gate", () => {
        const urn = (name: string) => named(resources, name).urn;
        assert.ok(!named(resources, "edge-backends-backend-1-deploy").dependencies.some((d) => d.includes("-health")));
        for (const [previous, next] of [
            ["backend-1", "backend-2"],
            ["backend-2", "backend-3"],
        ]) {
            for (const step of [instanceNamed(resources, `edge-backends-${next}`), named(resources, `edge-backends-${next}-deploy`)]) {
                assert.ok(step.dependencies.includes(urn(`edge-backends-${previous}-health`)), `${step.name} waits for ${previous}'s gate`);
            }
        }
        const deploy = named(resources, "edge-deploy");
        for (const name of ["backend-1", "backend-2", "backend-3"])
            assert.ok(deploy.dependencies.includes(urn(`edge-backends-${name}-health`)), name);
    });

    it("raises an alarm when any instance fails its status checks, to one topic; the host check also recovers the instance", async () => {
        // The alarms on the edge's load are test/capacityWatch.test.ts's.
        const alarms = ofType(resources, "aws:cloudwatch/metricAlarm:MetricAlarm").filter((a) => a.inputs.namespace === "AWS/EC2");
        const topic = `arn:aws:sns:eu-west-1:123456789012:edge-alarms`;
        const roles = ["proxy", "backend-1", "backend-2", "backend-3"];
        assert.deepEqual(
            alarms.map((a) => a.inputs.name).sort(),
            roles.flatMap((r) => [`wss-edge-dev-${r}-instance-check`, `wss-edge-dev-${r}-system-check`]).sort(),
        );
        for (const alarm of alarms) {
            assert.equal(alarm.inputs.namespace, "AWS/EC2");
            assert.match(alarm.inputs.metricName, /^StatusCheckFailed_(Instance|System)$/);
            assert.deepEqual(
                [alarm.inputs.statistic, alarm.inputs.period, alarm.inputs.evaluationPeriods, alarm.inputs.threshold],
                ["Maximum", 60, 2, 1],
            );
            assert.equal(alarm.inputs.comparisonOperator, "GreaterThanOrEqualToThreshold");
            assert.equal(alarm.inputs.treatMissingData, "missing", "a stopped VM reports nothing: a planned stop raises no alarm");
            assert.deepEqual(alarm.inputs.okActions, [topic]);
            const recover = alarm.inputs.metricName === "StatusCheckFailed_System" ? ["arn:aws:automate:eu-west-1:ec2:recover"] : [];
            assert.deepEqual(alarm.inputs.alarmActions, [topic, ...recover], alarm.inputs.name);
        }
        const instanceIds = Object.fromEntries(instances(resources).map((i) => [i.name, `${i.name}-id`]));
        assert.equal(named(resources, "edge-proxy-instance-check").inputs.dimensions.InstanceId, instanceIds["edge-proxy"]);
        assert.equal(named(resources, "edge-backend-2-system-check").inputs.dimensions.InstanceId, instanceIds["edge-backends-backend-2"]);
        assert.equal(ofType(resources, "aws:sns/topicSubscription:TopicSubscription").length, 0, "no subscriber unless alarmEmail is set");
    });

    it("keeps a dashboard of every instance's status checks, CPU and network, and exports its URL", () => {
        const [dashboard] = ofType(resources, "aws:cloudwatch/dashboard:Dashboard");
        // After the graphs of the edge's load (test/capacityWatch.test.ts).
        const body = JSON.parse(dashboard.inputs.dashboardBody);
        body.widgets = body.widgets.filter((w: any) => w.properties.metrics[0]?.[0] === "AWS/EC2");
        assert.deepEqual(
            body.widgets.map((w: any) => w.properties.metrics[0][1]),
            ["StatusCheckFailed", "CPUUtilization", "NetworkIn", "NetworkOut"],
        );
        for (const widget of body.widgets) {
            assert.deepEqual(
                widget.properties.metrics.map((m: any) => m[4].label),
                ["proxy", "backend-1", "backend-2", "backend-3"],
            );
        }
        assert.equal(
            outputs.dashboardUrl,
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards:name=wss-edge-dev",
        );
    });

    it("exports the endpoint, health URL, addresses, CA and rendered config, none of them secret", async () => {
        assert.equal(outputs.endpoint, `wss://${mockEdgeIp}/`);
        assert.equal(outputs.healthUrl, `https://${mockEdgeIp}/healthz`);
        assert.equal(outputs.proxyPublicIp, mockEdgeIp);
        assert.deepEqual(outputs.backendPrivateIps, mockBackendIps.slice(0, 3));
        assert.match(String(outputs.caCertificatePem), /^-----BEGIN CERTIFICATE-----/);
        for (const name of [
            "endpoint",
            "healthUrl",
            "proxyPublicIp",
            "backendPrivateIps",
            "caCertificatePem",
            "nginxConfig",
            "dashboardUrl",
        ]) {
            assert.equal(await secretness(run.exports[name]), false, name);
        }
    });

    it("renders an upstream listing every backend's private IP in order, with the stack's port", () => {
        const servers = [...String(outputs.nginxConfig).matchAll(/^\s+server (\S+) max_fails/gm)].map((m) => m[1]);
        assert.deepEqual(
            servers,
            mockBackendIps.slice(0, 3).map((ip) => `${ip}:8443`),
        );
        assert.match(String(outputs.nginxConfig), new RegExp(`server_name ${mockEdgeIp.replace(/\./g, "\\.")};`));
    });
});

describe("the AWS stack under mocks, other configs", () => {
    it("in both shapes, no security-group rule admits 22 and nothing reaches a VM over SSH: no remote command, no key pair", async () => {
        for (const proxyCount of ["1", "2"]) {
            const { resources } = await runEdgeProgram({ ...devConfig, proxyCount, httpRedirect: "true" });
            // Inline rules and rules made on their own, every protocol: -1 (all traffic) admits 22 whatever its ports say.
            const rules = [
                ...ofType(resources, "aws:ec2/securityGroup:SecurityGroup").flatMap((g) =>
                    (g.inputs.ingress ?? []).map((rule: any) => ({ where: g.name, ...rule })),
                ),
                ...ofType(resources, "aws:ec2/securityGroupRule:SecurityGroupRule")
                    .filter((r) => r.inputs.type === "ingress")
                    .map((r) => ({ where: r.name, ...r.inputs })),
                ...ofType(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").map((r) => ({
                    where: r.name,
                    protocol: r.inputs.ipProtocol,
                    fromPort: r.inputs.fromPort,
                    toPort: r.inputs.toPort,
                })),
            ];
            assert.ok(rules.length > 0);
            for (const rule of rules) {
                assert.notEqual(String(rule.protocol), "-1", `${rule.where} admits every port`);
                assert.ok(rule.fromPort > 22 || rule.toPort < 22, `${rule.where} admits ${rule.fromPort}-${rule.toPort}`);
            }
            assert.deepEqual(
                resources.filter((r) => r.type.startsWith("command:remote:") || r.type === "aws:ec2/keyPair:KeyPair").map((r) => r.name),
                [],
            );
            assert.ok(ofType(resources, "command:local:Command").length >= 7, "every deploy and gate goes through Systems Manager");
        }
    });

    it("proxyPlatform debian-13: Debian 13's image, a first boot that checks it, the hybrid group first and the ceiling of 90 KiB per socket; debian-12's user data as before", async () => {
        for (const proxyCount of ["1", "2"]) {
            const { resources } = await runEdgeProgram({ ...devConfig, proxyCount, proxyPlatform: "debian-13" });
            const proxy =
                proxyCount === "1"
                    ? ofType(resources, "aws:ec2/instance:Instance").find((r) => r.name === "edge-proxy")!.inputs
                    : ofType(resources, "aws:ec2/launchTemplate:LaunchTemplate")[0].inputs;
            assert.match(String(proxyCount === "1" ? proxy.ami : proxy.imageId), /-debian-13-/);
            const raw = await resolveOutput<string>(proxy.userData);
            const userData = proxyCount === "1" ? raw : Buffer.from(raw, "base64").toString();
            assert.match(userData, /\[ "debian-\$VERSION_ID" = "debian-13" \]/);
            assert.ok(
                userData.indexOf('wss-edge-check-platform"]') < userData.indexOf('wss-edge-first-boot"]'),
                "checked before anything is installed",
            );
            const release = bundleFiles(named(resources, "edge-deploy-release").inputs.content);
            assert.equal(release.platform, "debian-13\n");
            assert.match(release["nginx.conf"], /ssl_ecdh_curve X25519MLKEM768:X25519:prime256v1:secp384r1;/);
            assert.match(release["nginx.conf"], /limit_conn edge_sockets 29127;/, "c6i.large at 90 KiB per socket");
        }
        const { resources } = await runEdgeProgram(devConfig);
        const userData = await resolveOutput<string>(
            ofType(resources, "aws:ec2/instance:Instance").find((r) => r.name === "edge-proxy")!.inputs.userData,
        );
        assert.doesNotMatch(userData, /check-platform/, "the default's user data, and so its VMs, stay as they were");
        assert.equal(bundleFiles(named(resources, "edge-deploy-release").inputs.content).platform, "debian-12\n");
    });

    it("opens port 80 on the proxy only when the HTTP redirect is on", async () => {
        const { resources, outputs } = await runEdgeProgram({
            ...devConfig,
            httpRedirect: "true",
            allowedCidrs: '["192.0.2.0/24","2001:db8::/32"]',
        });
        const ports = securityGroup(resources, "-proxy").inputs.ingress.map((r: any) => [r.fromPort, r.cidrBlocks, r.ipv6CidrBlocks]);
        assert.deepEqual(ports, [
            [443, ["192.0.2.0/24"], ["2001:db8::/32"]],
            [80, ["192.0.2.0/24"], ["2001:db8::/32"]],
            [9113, undefined, undefined],
        ]);
        assert.match(String(outputs.nginxConfig), /return 301 https:\/\/\$host\$request_uri;/);
    });

    it("changes the deploy trigger when a setting changes the rendered config, and only the config part", async () => {
        const before = named((await runEdgeProgram(devConfig)).resources, "edge-deploy").inputs.triggers;
        const after = named((await runEdgeProgram({ ...devConfig, idleTimeoutSeconds: "900" })).resources, "edge-deploy").inputs.triggers;
        assert.notEqual(after[0], before[0]);
        assert.equal(after[2], before[2]);
    });

    it("subscribes alarmEmail to the alarms' topic", async () => {
        const { resources } = await runEdgeProgram({ ...devConfig, alarmEmail: "ops@example.com" });
        const [subscription] = ofType(resources, "aws:sns/topicSubscription:TopicSubscription");
        assert.deepEqual(
            [subscription.inputs.protocol, subscription.inputs.endpoint, subscription.inputs.topic],
            ["email", "ops@example.com", "arn:aws:sns:eu-west-1:123456789012:edge-alarms"],
        );
    });

    it("renders each affinity mode and the origin policy into the config it deploys", async () => {
        const config = async (settings: Record<string, string>) =>
            String((await runEdgeProgram({ ...devConfig, ...settings })).outputs.nginxConfig);
        const byAddress = await config({});
        assert.match(byAddress, /^\s+ip_hash;$/m);
        assert.match(
            byAddress,
            /map \$http_origin \$origin_allowed \{\n\s+''\s+1;\n\s+"https:\/\/198\.51\.100\.7" 1;\n\s+default\s+0;/,
            "by default, the edge's own origin",
        );
        const byCookie = await config({
            affinity: "cookie",
            affinityCookieName: "sid",
            affinityCookieMaxAgeSeconds: "3600",
            domainName: "ws.example.com",
        });
        assert.match(byCookie, /^\s+hash \$affinity_key consistent;$/m);
        assert.doesNotMatch(byCookie, /ip_hash/);
        assert.match(byCookie, /"sid=\$request_id; Path=\/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"/);
        assert.match(byCookie, /add_header Set-Cookie \$affinity_set_cookie always;/);
        assert.match(byCookie, /"https:\/\/ws\.example\.com" 1;/);
        const byRoom = await config({ affinity: "query:room", allowedOrigins: '["https://app.example.com"]' });
        assert.match(byRoom, /map \$arg_room \$affinity_key \{/);
        assert.match(byRoom, /"https:\/\/app\.example\.com" 1;/);
        assert.doesNotMatch(byRoom, /198\.51\.100\.7" 1;/, "a list given replaces the default");
        assert.doesNotMatch(await config({ allowedOrigins: '["*"]' }), /origin_allowed/);
    });

    it("uses the domain name for the endpoint, the certificate and server_name", async () => {
        const { resources, outputs } = await runEdgeProgram({ ...devConfig, domainName: "ws.example.com" });
        assert.equal(outputs.endpoint, "wss://ws.example.com/");
        const edgeRequest = ofType(resources, "tls:index/certRequest:CertRequest").find((r) => r.name === "edge-edge")!;
        assert.deepEqual(edgeRequest.inputs.dnsNames, ["ws.example.com"]);
        assert.match(String(outputs.nginxConfig), /server_name ws\.example\.com;/);
    });

    it("runs the user's own image without building one or creating a repository", async () => {
        const { resources } = await runEdgeProgram({ ...devConfig, backendImage: "ghcr.io/acme/ws-app:1.4" });
        assert.equal(ofType(resources, "aws:ecr/repository:Repository").length, 0);
        assert.equal(ofType(resources, "docker:index/image:Image").length, 0);
        const env = storedFiles(resources, "edge-backends-backend-1-release")["backend.env"];
        assert.match(env, /^IMAGE=ghcr\.io\/acme\/ws-app:1\.4$/m);
        assert.match(env, /^REGISTRY=$/m);
        const policy =
            ofType(resources, "aws:iam/rolePolicy:RolePolicy").find((p) => p.name === "edge-backends-backend-1") ?? assert.fail("policy");
        assert.doesNotMatch(
            await resolveOutput<string>(policy.inputs.policy),
            /ecr:/,
            "no image pulls from AWS: the role reads its releases only",
        );
    });

    it("serves a user-supplied certificate instead of issuing an edge certificate", async () => {
        const certificate = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n";
        const { resources } = await runEdgeProgram({
            ...devConfig,
            domainName: "ws.example.com",
            tlsCertificate: certificate,
            tlsPrivateKey: "-----BEGIN PRIVATE KEY-----\nTUlJQg==\n-----END PRIVATE KEY-----\n",
        });
        assert.equal(
            ofType(resources, "tls:index/certRequest:CertRequest").find((r) => r.name === "edge-edge"),
            undefined,
        );
        assert.equal(storedFiles(resources, "edge-deploy-release")["tls/edge.crt"], certificate);
    });

    it("scales to five backends over three zones and builds an arm64 image for Graviton types", async () => {
        const { resources, outputs } = await runEdgeProgram({ ...devConfig, backendCount: "5", backendInstanceType: "c7g.large" });
        const backends = instances(resources).filter((r) => r.name.startsWith("edge-backends"));
        assert.equal(backends.length, 5);
        assert.deepEqual(await Promise.all(backends.map((r) => resolveOutput(r.inputs.subnetId))), [
            "subnet-a",
            "subnet-b",
            "subnet-c",
            "subnet-a",
            "subnet-b",
        ]);
        assert.equal(ofType(resources, "docker:index/image:Image")[0].inputs.build.platform, "linux/arm64");
        assert.equal((outputs.backendPrivateIps as string[]).length, 5);
    });
});

describe("Pulumi.yaml", () => {
    const project = parseYaml(readFileSync(join(__dirname, "..", "Pulumi.yaml"), "utf8"));
    const dev = parseYaml(readFileSync(join(__dirname, "..", "Pulumi.dev.yaml"), "utf8"));

    it("refreshes before every up, preview and destroy, so a lost VM or a moved address is seen (docs/engine-rules.md, e)", () => {
        assert.equal(project.options?.refresh, "always");
    });

    it("declares exactly what the settings table gives (regenerate with `npm run settings:pulumi-yaml`)", () => {
        assert.deepEqual(project.config, pulumiConfigBlock());
        for (const key of secretSettingKeys)
            assert.ok(!(key in project.config), `${key}: a secret key cannot have a default, and without one every stack must set it`);
    });

    const stackFiles = readdirSync(join(__dirname, "..")).filter((file) => /^Pulumi\.[^.]+\.yaml$/.test(file));
    it("has at least the dev stack file", () => assert.ok(stackFiles.includes("Pulumi.dev.yaml")));
    for (const file of stackFiles) {
        it(`${file} passes the CLI's project-config check that runs before every preview`, () => {
            const stack = parseYaml(readFileSync(join(__dirname, "..", file), "utf8"));
            assert.equal(projectConfigError(project.name, project.config, file.split(".")[1], stack?.config ?? {}), undefined);
        });
    }

    it("the CLI check, as transcribed, refuses what it refuses in the CLI: a key without default, a plain secret", () => {
        const declared = { domainName: { type: "string" as const }, adminCidrs: { type: "array" as const, items: { type: "string" } } };
        assert.equal(
            projectConfigError("wss-edge", declared, "dev", {}),
            "Stack 'dev' is missing configuration values 'adminCidrs' and 'domainName'",
        );
        const withSecretDefault = { tlsPrivateKey: { type: "string" as const, secret: true, default: "" } };
        assert.equal(
            projectConfigError("wss-edge", withSecretDefault, "dev", {}),
            "Stack 'dev' with configuration key 'tlsPrivateKey' must be encrypted as it's secret",
        );
        assert.equal(
            projectConfigError("wss-edge", withSecretDefault, "dev", { "wss-edge:tlsPrivateKey": { secure: "v1:abc" } }),
            undefined,
        );
        assert.equal(
            projectConfigError("wss-edge", { backendCount: { type: "integer" } }, "dev", { "wss-edge:backendCount": "three" }),
            "Stack 'dev' with configuration key 'backendCount' must be of type 'integer'",
        );
        assert.equal(
            projectConfigError("wss-edge", declared, "dev", { "wss-edge:domainName": "", "wss-edge:adminCidrs": ["203.0.113.0/24"] }),
            undefined,
        );
    });

    it("a new stack needs no key at all: every key has a default", () => {
        assert.equal(projectConfigError(project.name, project.config, "prod", {}), undefined);
    });

    it("is previewed on every pull request after the tests, with the guardrails, and the preview commented on the PR", () => {
        const workflow = parseYaml(readFileSync(join(__dirname, "..", ".github", "workflows", "pull-request.yml"), "utf8"));
        assert.ok("pull_request" in workflow.on);
        assert.ok(
            workflow.jobs.test.steps.some((step: any) => /bash \.ci\/run/.test(step.run ?? "")),
            "the test job runs .ci/run",
        );
        assert.equal(workflow.jobs.test.container.image, "debian:12", "the tests run on the Debian the proxy VM runs, with its NGINX 1.22");
        assert.match(
            workflow.jobs.test.container.options,
            /--privileged.*--tmpfs \/var\/tmp/,
            "the VM twin's namespaces and overlay mount can be made there, so its tests run instead of failing",
        );
        assert.deepEqual(workflow.jobs.preview.needs, "test");
        const preview = workflow.jobs.preview.steps.find((step: any) => String(step.uses).startsWith("pulumi/actions@"));
        assert.equal(preview.with.command, "preview");
        assert.equal(preview.with["stack-name"], "dev");
        assert.equal(preview.with.policyPacks, "policy");
        assert.deepEqual(workflow.jobs.comment.needs, "preview");
    });

    it("runs the PR's code with least privilege: tests with a read-only token; the preview with a token that reads the dev stack only; the comment runs none of it", () => {
        const workflow = parseYaml(readFileSync(join(__dirname, "..", ".github", "workflows", "pull-request.yml"), "utf8"));
        assert.deepEqual(workflow.permissions, {});
        assert.deepEqual(workflow.jobs.test.permissions, { contents: "read" });
        assert.deepEqual(workflow.jobs.preview.permissions, { contents: "read", "id-token": "write" }, "it cannot write to the PR");
        assert.equal(workflow.jobs.preview.if, "github.event.pull_request.head.repo.full_name == github.repository");
        const auth = workflow.jobs.preview.steps.find((step: any) => String(step.uses).startsWith("pulumi/auth-actions@"));
        assert.equal(
            auth.with["requested-token-type"],
            "urn:pulumi:token-type:access_token:team",
            "a team token, scoped by the team's stack permissions",
        );
        assert.doesNotMatch(JSON.stringify(workflow.jobs.preview), /secrets\.PULUMI_ACCESS_TOKEN/, "no long-lived token of wider scope");
        assert.deepEqual(workflow.jobs.comment.permissions, { "pull-requests": "write" });
        assert.ok(
            workflow.jobs.comment.steps.every((step: any) => !String(step.uses).startsWith("actions/checkout@") && step.run === undefined),
            "the job that may write to the PR checks out and runs nothing of it",
        );
        for (const job of Object.values<any>(workflow.jobs)) {
            const node = job.steps.find((step: any) => String(step.uses).startsWith("actions/setup-node@"));
            if (node) assert.ok(Number(node.with["node-version"]) >= 22, "a supported Node LTS, as @pulumi/pulumi requires");
        }
    });

    it("deploys every push to the default branch and refreshes weekly, both `pulumi up --refresh` from GitHub's runner in an environment that can require approval", () => {
        const workflow = (name: string) => parseYaml(readFileSync(join(__dirname, "..", ".github", "workflows", name), "utf8"));
        const deploy = workflow("deploy.yml");
        const refresh = workflow("refresh.yml");
        assert.deepEqual(deploy.on.push.branches, ["main"]);
        assert.deepEqual(deploy.jobs.up.needs, "test", "only after the tests pass");
        assert.match(refresh.on.schedule[0].cron, /^\S+ \S+ \* \* 1$/, "weekly");
        for (const { jobs } of [deploy, refresh]) {
            assert.equal(jobs.up.environment, "production");
            assert.deepEqual(jobs.up.permissions, { contents: "read", "id-token": "write" });
            const up = jobs.up.steps.find((step: any) => String(step.uses).startsWith("pulumi/actions@"));
            assert.equal(up.with.command, "up");
            assert.equal(up.with.refresh, true, "unrefreshed, `up` does not see a lost VM or a moved address (docs/engine-rules.md, e)");
            assert.ok(
                jobs.up.steps.some((step: any) => String(step.uses).startsWith("aws-actions/configure-aws-credentials@")),
                "AWS by OIDC",
            );
        }
        assert.deepEqual(deploy.concurrency, refresh.concurrency, "never two `up`s of one stack at once");
        assert.equal(refresh.jobs.report.if, "failure()", "a failed refresh opens an issue");
        assert.deepEqual(refresh.jobs.report.permissions, { issues: "write" });
    });

    it("declares the policy pack's own dependencies, at the versions the stack uses", () => {
        const root = JSON.parse(readFileSync(join(__dirname, "..", "package.json"), "utf8"));
        const pack = JSON.parse(readFileSync(join(__dirname, "..", "policy", "package.json"), "utf8"));
        for (const name of ["@pulumi/policy", "@pulumi/pulumi", "@pulumi/aws"])
            assert.equal(pack.dependencies[name], root.dependencies[name], name);
    });

    it("has a dev stack whose settings validate", async () => {
        const config = Object.fromEntries(
            Object.entries<any>(dev.config)
                .filter(([k]) => k.startsWith("wss-edge:"))
                .map(([k, v]) => [k.slice("wss-edge:".length), typeof v === "string" ? v : JSON.stringify(v)]),
        );
        const { resources } = await runEdgeProgram(config);
        assert.ok(resources.length > 0);
    });
});
