// The AWS resource graph, proven under Pulumi's mocks: what `pulumi up` would register.
import assert from "node:assert/strict";
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
        assert.deepEqual(all.map((r) => r.name).sort(), ["backends-backend-1", "backends-backend-2", "backends-backend-3", "edge-proxy"]);
    });

    it("spreads the backends over the availability zones' subnets in a stable order", async () => {
        const subnets = await Promise.all(
            instances(resources)
                .filter((r) => r.name.startsWith("backends"))
                .map((r) => resolveOutput(r.inputs.subnetId)),
        );
        assert.deepEqual(subnets, ["subnet-a", "subnet-b", "subnet-c"]);
    });

    it("admits exactly 443 from everywhere, SSH from the admin range, and NGINX's metrics from its own group only on the proxy; no port 80 without the redirect", () => {
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
                { port: 22, to: 22, protocol: "tcp", v4: ["203.0.113.0/24"], v6: [], groups: undefined, self: undefined },
                { port: 9113, to: 9113, protocol: "tcp", v4: undefined, v6: undefined, groups: undefined, self: true },
            ],
        );
    });

    it("admits only the backend port, the app's metrics and the deploy's SSH, only from the proxy's security group, on the backends", () => {
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
                { port: 22, to: 22, protocol: "tcp", groups: ["edge-proxy-id"], v4: undefined, v6: undefined },
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
        const keys = ofType(resources, "tls:index/privateKey:PrivateKey").filter((r) => r.inputs.algorithm !== "ED25519");
        assert.equal(keys.length, 6, "CA, edge, three backends, proxy client");
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
        const env = bundleFiles(named(resources, "backends-backend-1-deploy").inputs.stdin)["backend.env"];
        assert.match(env, /^IMAGE=123456789012\.dkr\.ecr\.eu-west-1\.amazonaws\.com\/backends-app@sha256:[0-9a-f]{64}$/m);
        assert.match(env, /^REGISTRY=123456789012\.dkr\.ecr\.eu-west-1\.amazonaws\.com$/m);
        assert.match(env, /^BACKEND_NAME=backend-1$/m);
        assert.match(env, /^PING_INTERVAL_SECONDS=30$/m);
    });

    it("lets the backends' role do one thing, pull from their repository, and boots them only once it exists", async () => {
        const [policy] = ofType(resources, "aws:iam/rolePolicy:RolePolicy");
        const statements = (await resolveOutput<any>(policy.inputs.policy)).Statement;
        assert.deepEqual(statements.flatMap((s: any) => s.Action).sort(), [
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetAuthorizationToken",
            "ecr:GetDownloadUrlForLayer",
        ]);
        assert.equal(
            ofType(resources, "aws:ssm/parameter:Parameter").length,
            0,
            "no key sits in AWS where another backend's role could read it",
        );
        for (const backend of instances(resources).filter((r) => r.name.startsWith("backends-"))) {
            assert.ok(backend.dependencies.includes(policy.urn), `${backend.name} waits for its role's policy`);
        }
    });

    it("keeps private keys secret: TLS keys travel only on the deploys' stdin, user data holds only the host's SSH key", async () => {
        const commands = ofType(resources, "command:remote:Command");
        assert.deepEqual(commands.map((c) => c.name).sort(), [
            "backends-backend-1-deploy",
            "backends-backend-1-health",
            "backends-backend-2-deploy",
            "backends-backend-2-health",
            "backends-backend-3-deploy",
            "backends-backend-3-health",
            "edge-deploy",
        ]);
        for (const command of commands) {
            assert.ok(command.inputs.stdin, `${command.name} has a release on stdin`);
            assert.ok(command.secretInputs.has("stdin"), `${command.name}: its stdin reaches the provider as a secret`);
            assert.ok(command.secretInputs.has("connection"), `${command.name}: the SSH key reaches the provider as a secret`);
            assert.ok(!command.secretInputs.has("triggers"), `${command.name}: the triggers stay readable in a preview diff`);
        }
        const edgeRelease = bundleFiles(named(resources, "edge-deploy").inputs.stdin);
        assert.match(edgeRelease["nginx.conf"], /^# wss-edge/);
        assert.match(edgeRelease["tls/edge.key"], /PRIVATE KEY/);
        assert.match(
            edgeRelease["backend-health-agent.sh"],
            /^#!\/usr\/bin\/env bash/,
            "the release carries the health agent it runs with",
        );
        assert.match(bundleFiles(named(resources, "backends-backend-2-deploy").inputs.stdin)["tls/server.key"], /PRIVATE KEY/);
        for (const instance of instances(resources)) {
            assert.ok(instance.secretInputs.has("userData"), `${instance.name}: its user data (with the SSH host key) is a secret`);
            const userData = await resolveOutput<string>(instance.inputs.userData);
            assert.deepEqual(
                [...userData.matchAll(/-----BEGIN ([A-Z ]*PRIVATE KEY)-----/g)].map((m) => m[1]),
                ["OPENSSH PRIVATE KEY"],
                instance.name,
            );
        }
        for (const [name, value] of Object.entries(outputs)) {
            assert.doesNotMatch(JSON.stringify(value) ?? "", /PRIVATE KEY/, `output ${name}`);
        }
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

    it("copies the deploy script, then runs it with the release on stdin over SSH with the host key pinned", async () => {
        const copy = named(resources, "edge-deploy-script");
        assert.equal(copy.inputs.remotePath, "/home/admin/wss-edge/deploy-edge-config.sh");
        assert.equal(await copy.inputs.source.path, "deploy/deploy-edge-config.sh");
        const deploy = named(resources, "edge-deploy");
        assert.match(deploy.inputs.create, /cloud-init status --wait/);
        assert.match(
            deploy.inputs.create,
            /\nsudo WSS_EDGE_ROOT=\/etc\/wss-edge WSS_EDGE_SYSTEMD_UNIT=nginx bash \/home\/admin\/wss-edge\/deploy-edge-config\.sh$/,
        );
        assert.deepEqual(
            deploy.inputs.triggers.map((t: string) => t.split(":")[0]),
            ["config", "certificates", "script", "agent", "instance"],
        );
        assert.equal(deploy.inputs.connection.host, mockEdgeIp);
        assert.equal(deploy.inputs.connection.user, "admin");
        const hostKey = named(resources, "edge-proxy-host");
        assert.equal(hostKey.inputs.algorithm, "ED25519");
        for (const resource of [copy, deploy])
            assert.equal(
                resource.inputs.connection.hostKey,
                `ssh-ed25519 AAAA${Buffer.from("edge-proxy-host").toString("base64")}`,
                resource.name,
            );
    });

    it("reaches each backend through the proxy with both host keys pinned, and gates it from the proxy over mutual TLS", () => {
        for (const [i, name] of ["backend-1", "backend-2", "backend-3"].entries()) {
            const deploy = named(resources, `backends-${name}-deploy`);
            assert.equal(deploy.inputs.connection.host, mockBackendIps[i]);
            assert.equal(deploy.inputs.connection.user, "ec2-user");
            assert.equal(deploy.inputs.connection.hostKey, `ssh-ed25519 AAAA${Buffer.from(`backends-${name}-host`).toString("base64")}`);
            assert.equal(deploy.inputs.connection.proxy.host, mockEdgeIp);
            assert.equal(deploy.inputs.connection.proxy.hostKey, `ssh-ed25519 AAAA${Buffer.from("edge-proxy-host").toString("base64")}`);
            assert.match(deploy.inputs.create, /\nsudo bash \/home\/ec2-user\/wss-edge\/deploy-backend\.sh$/);
            const gate = named(resources, `backends-${name}-health`);
            assert.equal(gate.inputs.connection.host, mockEdgeIp, "the gate runs on the proxy");
            assert.match(
                gate.inputs.create,
                new RegExp(
                    `backend-health-gate ${name} ${mockBackendIps[i].replace(/\./g, "\\.")} 8443 backends\\.wss-edge\\.internal 180$`,
                ),
            );
            assert.deepEqual(Object.keys(bundleFiles(gate.inputs.stdin)).sort(), ["ca.crt", "client.crt", "client.key"]);
        }
    });

    it("rolls the backends one at a time, and deploys the edge's config only after every backend passed its gate", () => {
        const urn = (name: string) => named(resources, name).urn;
        assert.ok(!named(resources, "backends-backend-1-deploy").dependencies.some((d) => d.includes("-health")));
        for (const [previous, next] of [
            ["backend-1", "backend-2"],
            ["backend-2", "backend-3"],
        ]) {
            for (const step of [`backends-${next}`, `backends-${next}-deploy`]) {
                assert.ok(
                    named(resources, step).dependencies.includes(urn(`backends-${previous}-health`)),
                    `${step} waits for ${previous}'s gate`,
                );
            }
        }
        const deploy = named(resources, "edge-deploy");
        for (const name of ["backend-1", "backend-2", "backend-3"])
            assert.ok(deploy.dependencies.includes(urn(`backends-${name}-health`)), name);
    });

    it("raises an alarm when any instance fails its status checks, to one topic; the host check also recovers the instance", async () => {
        const alarms = ofType(resources, "aws:cloudwatch/metricAlarm:MetricAlarm");
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
            assert.equal(alarm.inputs.treatMissingData, "breaching", "a VM that stops reporting is not healthy");
            assert.deepEqual(alarm.inputs.okActions, [topic]);
            const recover = alarm.inputs.metricName === "StatusCheckFailed_System" ? ["arn:aws:automate:eu-west-1:ec2:recover"] : [];
            assert.deepEqual(alarm.inputs.alarmActions, [topic, ...recover], alarm.inputs.name);
        }
        const instanceIds = Object.fromEntries(instances(resources).map((i) => [i.name, `${i.name}-id`]));
        assert.equal(named(resources, "edge-proxy-instance-check").inputs.dimensions.InstanceId, instanceIds["edge-proxy"]);
        assert.equal(named(resources, "edge-backend-2-system-check").inputs.dimensions.InstanceId, instanceIds["backends-backend-2"]);
        assert.equal(ofType(resources, "aws:sns/topicSubscription:TopicSubscription").length, 0, "no subscriber unless alarmEmail is set");
    });

    it("keeps a dashboard of every instance's status checks, CPU and network, and exports its URL", () => {
        const [dashboard] = ofType(resources, "aws:cloudwatch/dashboard:Dashboard");
        const body = JSON.parse(dashboard.inputs.dashboardBody);
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
            [22, ["203.0.113.0/24"], []],
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
        const env = bundleFiles(named(resources, "backends-backend-1-deploy").inputs.stdin)["backend.env"];
        assert.match(env, /^IMAGE=ghcr\.io\/acme\/ws-app:1\.4$/m);
        assert.match(env, /^REGISTRY=$/m);
        assert.equal(ofType(resources, "aws:iam/role:Role").length, 0, "no role: the hosts need nothing from AWS");
        assert.equal(named(resources, "backends-backend-1").inputs.iamInstanceProfile, undefined);
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
        assert.equal(bundleFiles(named(resources, "edge-deploy").inputs.stdin)["tls/edge.crt"], certificate);
    });

    it("scales to five backends over three zones and builds an arm64 image for Graviton types", async () => {
        const { resources, outputs } = await runEdgeProgram({ ...devConfig, backendCount: "5", backendInstanceType: "c7g.large" });
        const backends = instances(resources).filter((r) => r.name.startsWith("backends"));
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

    it("is previewed on every pull request after the tests, commented on the PR, with the guardrails", () => {
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
        assert.equal(preview.with["comment-on-pr"], true);
        assert.equal(preview.with.policyPacks, "policy");
        assert.match(preview.env.PULUMI_ACCESS_TOKEN, /secrets\.PULUMI_ACCESS_TOKEN/);
    });

    it("gives the job that runs the PR's code as root a read-only token and no cloud identity; previews only its own branches", () => {
        const workflow = parseYaml(readFileSync(join(__dirname, "..", ".github", "workflows", "pull-request.yml"), "utf8"));
        assert.deepEqual(workflow.permissions, {});
        assert.deepEqual(workflow.jobs.test.permissions, { contents: "read" });
        assert.deepEqual(workflow.jobs.preview.permissions, { contents: "read", "id-token": "write", "pull-requests": "write" });
        assert.equal(workflow.jobs.preview.if, "github.event.pull_request.head.repo.full_name == github.repository");
        for (const job of Object.values<any>(workflow.jobs)) {
            const node = job.steps.find((step: any) => String(step.uses).startsWith("actions/setup-node@"));
            assert.ok(Number(node.with["node-version"]) >= 22, "a supported Node LTS, as @pulumi/pulumi requires");
        }
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
