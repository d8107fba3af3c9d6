// The AWS resource graph, proven under Pulumi's mocks: what `pulumi up` would register.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { settingDefaults, settingKeys } from "../settings/edgeSettings";
import { isRoot, nginxTest, removeTestPki } from "./support/nginxCheck";
import { RegisteredResource, mockBackendIps, mockEdgeIp, resolveOutput, runEdgeProgram, secretness, waitForRPCs } from "./support/pulumiProgram";

after(removeTestPki);

const devConfig = { adminCidrs: '["203.0.113.0/24"]' };
const ofType = (resources: RegisteredResource[], type: string) => resources.filter((r) => r.type === type);
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
        const subnets = await Promise.all(instances(resources).filter((r) => r.name.startsWith("backends")).map((r) => resolveOutput(r.inputs.subnetId)));
        assert.deepEqual(subnets, ["subnet-a", "subnet-b", "subnet-c"]);
    });

    it("admits exactly 443 from everywhere and SSH from the admin range on the proxy; no port 80 without the redirect", () => {
        const proxy = securityGroup(resources, "-proxy");
        assert.deepEqual(
            proxy.inputs.ingress.map((r: any) => ({ port: r.fromPort, to: r.toPort, protocol: r.protocol, v4: r.cidrBlocks, v6: r.ipv6CidrBlocks, groups: r.securityGroups })),
            [
                { port: 443, to: 443, protocol: "tcp", v4: ["0.0.0.0/0"], v6: ["::/0"], groups: undefined },
                { port: 22, to: 22, protocol: "tcp", v4: ["203.0.113.0/24"], v6: [], groups: undefined },
            ],
        );
    });

    it("admits only the backend port, only from the proxy's security group, on the backends", () => {
        const backend = securityGroup(resources, "-backend");
        assert.equal(backend.inputs.ingress.length, 1);
        const [rule] = backend.inputs.ingress;
        assert.equal(rule.fromPort, 8443);
        assert.equal(rule.toPort, 8443);
        assert.equal(rule.protocol, "tcp");
        assert.deepEqual(rule.securityGroups, ["edge-proxy-id"]);
        assert.equal(rule.cidrBlocks, undefined);
        assert.equal(rule.ipv6CidrBlocks, undefined);
    });

    it("requires IMDSv2 and encrypts the root volume of every instance", () => {
        for (const instance of instances(resources)) {
            assert.equal(instance.inputs.metadataOptions.httpTokens, "required", instance.name);
            assert.equal(instance.inputs.rootBlockDevice.encrypted, true, instance.name);
        }
    });

    it("issues an ECDSA P-256 CA, an edge certificate for the Elastic IP, one certificate per backend and a client certificate", () => {
        const keys = ofType(resources, "tls:index/privateKey:PrivateKey").filter((r) => r.name !== "edge-proxy-deploy");
        assert.ok(keys.every((k) => k.inputs.algorithm === "ECDSA" && k.inputs.ecdsaCurve === "P256"));
        assert.deepEqual(ofType(resources, "tls:index/selfSignedCert:SelfSignedCert").map((r) => [r.name, r.inputs.isCaCertificate]), [["edge-ca", true]]);
        const requests = Object.fromEntries(ofType(resources, "tls:index/certRequest:CertRequest").map((r) => [r.name, r.inputs]));
        assert.deepEqual(Object.keys(requests).sort(), ["edge-backend-1", "edge-backend-2", "edge-backend-3", "edge-edge", "edge-proxy-client"]);
        assert.deepEqual(requests["edge-edge"].ipAddresses, [mockEdgeIp]);
        assert.ok(requests["edge-backend-2"].dnsNames.includes("backends.wss-edge.internal"));
        const usages = Object.fromEntries(ofType(resources, "tls:index/locallySignedCert:LocallySignedCert").map((r) => [r.name, r.inputs.allowedUses]));
        assert.ok(usages["edge-proxy-client"].includes("client_auth"));
        assert.ok(usages["edge-backend-1"].includes("server_auth") && !usages["edge-backend-1"].includes("client_auth"));
    });

    it("builds the backend image into the stack's own ECR repository and runs it by digest", async () => {
        assert.equal(ofType(resources, "aws:ecr/repository:Repository").length, 1);
        const [image] = ofType(resources, "docker:index/image:Image");
        assert.match(image.inputs.build.context, /backend$/);
        assert.equal(image.inputs.build.platform, "linux/amd64");
        const userData = await resolveOutput<string>(instances(resources).find((r) => r.name === "backends-backend-1")!.inputs.userData);
        assert.match(userData, /@sha256:/);
        assert.match(userData, /docker login/);
    });

    it("lets the backends' role read only their own certificate parameters and pull from their repository", async () => {
        const [policy] = ofType(resources, "aws:iam/rolePolicy:RolePolicy");
        const statements = (await resolveOutput<any>(policy.inputs.policy)).Statement;
        const actions = statements.flatMap((s: any) => s.Action).sort();
        assert.deepEqual(actions, ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetAuthorizationToken", "ecr:GetDownloadUrlForLayer", "ssm:GetParameter"]);
        const ssm = statements.find((s: any) => s.Action.includes("ssm:GetParameter"));
        assert.equal(ssm.Resource.length, 1 + 3 * 2);
        assert.ok(ssm.Resource.every((arn: string) => arn.startsWith("arn:aws:ssm:eu-west-1:123456789012:parameter/wss-edge/dev/backends/")));
    });

    it("keeps private keys secret: SSM SecureString, the deploy's stdin, never in user data or outputs", async () => {
        const keyParameters = ofType(resources, "aws:ssm/parameter:Parameter").filter((r) => r.name.endsWith("-key"));
        assert.equal(keyParameters.length, 3);
        assert.ok(keyParameters.every((p) => p.inputs.type === "SecureString"));
        const [deploy] = ofType(resources, "command:remote:Command");
        assert.match(deploy.inputs.stdin, /^nginx\.conf /);
        assert.ok(deploy.secretInputs.has("stdin"), "the release bundle reaches the provider as a secret");
        assert.ok(deploy.secretInputs.has("connection"), "the SSH key reaches the provider as a secret");
        assert.ok(!deploy.secretInputs.has("triggers"), "the triggers stay readable in a preview diff");
        for (const instance of instances(resources)) {
            const userData = await resolveOutput<string>(instance.inputs.userData);
            assert.doesNotMatch(userData, /PRIVATE KEY/, instance.name);
        }
        for (const [name, value] of Object.entries(outputs)) {
            assert.doesNotMatch(JSON.stringify(value), /PRIVATE KEY/, `output ${name}`);
        }
    });

    it("marks every issued private key as a Pulumi secret and the CA certificate as plain", async () => {
        const { EdgePki } = await import("../components/edgePki");
        const { edgePkiSpec } = await import("../pki/pkiSpec");
        const pki = new EdgePki("secretness", { spec: edgePkiSpec({ edgeDnsNames: ["ws.example.com"], edgeIpAddresses: [], backendCount: 1, userSuppliedEdgeCertificate: false }) });
        assert.equal(await secretness(pki.edgePrivateKeyPem), true);
        assert.equal(await secretness(pki.backendCertificates[0].privateKeyPem), true);
        assert.equal(await secretness(pki.proxyClientCertificate.privateKeyPem), true);
        assert.equal(await secretness(pki.caCertificatePem), false);
        await waitForRPCs();
    });

    it("copies the deploy script, then runs it with the release on stdin, re-running when the release changes", () => {
        const [copy] = ofType(resources, "command:remote:CopyToRemote");
        assert.equal(copy.inputs.remotePath, "/home/admin/wss-edge/deploy-edge-config.sh");
        const [deploy] = ofType(resources, "command:remote:Command");
        assert.match(deploy.inputs.create, /WSS_EDGE_SYSTEMD_UNIT=nginx bash \/home\/admin\/wss-edge\/deploy-edge-config\.sh/);
        assert.deepEqual(deploy.inputs.triggers.map((t: string) => t.split(":")[0]), ["config", "certificates", "script"]);
        assert.equal(deploy.inputs.connection.host, mockEdgeIp);
    });

    it("exports the endpoint, health URL, addresses, CA and rendered config, none of them secret", async () => {
        assert.equal(outputs.endpoint, `wss://${mockEdgeIp}/`);
        assert.equal(outputs.healthUrl, `https://${mockEdgeIp}/healthz`);
        assert.equal(outputs.proxyPublicIp, mockEdgeIp);
        assert.deepEqual(outputs.backendPrivateIps, mockBackendIps.slice(0, 3));
        assert.match(String(outputs.caCertificatePem), /^-----BEGIN CERTIFICATE-----/);
        for (const name of ["endpoint", "healthUrl", "proxyPublicIp", "backendPrivateIps", "caCertificatePem", "nginxConfig"]) {
            assert.equal(await secretness(run.exports[name]), false, name);
        }
    });

    it("exports a rendered config that Debian's nginx -t accepts with real certificates", { skip: !isRoot && "needs root: the VM config uses /run and /var/log/nginx" }, async () => {
        const result = await nginxTest(String(outputs.nginxConfig));
        assert.ok(result.ok, result.output);
    });

    it("renders an upstream listing every backend's private IP in order, with the stack's port", () => {
        const servers = [...String(outputs.nginxConfig).matchAll(/^\s+server (\S+) max_fails/gm)].map((m) => m[1]);
        assert.deepEqual(servers, mockBackendIps.slice(0, 3).map((ip) => `${ip}:8443`));
        assert.match(String(outputs.nginxConfig), new RegExp(`server_name ${mockEdgeIp.replace(/\./g, "\\.")};`));
    });
});

describe("the AWS stack under mocks, other configs", () => {
    it("opens port 80 on the proxy only when the HTTP redirect is on", async () => {
        const { resources, outputs } = await runEdgeProgram({ ...devConfig, httpRedirect: "true", allowedCidrs: '["192.0.2.0/24","2001:db8::/32"]' });
        const ports = securityGroup(resources, "-proxy").inputs.ingress.map((r: any) => [r.fromPort, r.cidrBlocks, r.ipv6CidrBlocks]);
        assert.deepEqual(ports, [
            [443, ["192.0.2.0/24"], ["2001:db8::/32"]],
            [80, ["192.0.2.0/24"], ["2001:db8::/32"]],
            [22, ["203.0.113.0/24"], []],
        ]);
        assert.match(String(outputs.nginxConfig), /return 301 https:\/\/\$host\$request_uri;/);
    });

    it("changes the deploy trigger when a setting changes the rendered config, and only the config part", async () => {
        const before = ofType((await runEdgeProgram(devConfig)).resources, "command:remote:Command")[0].inputs.triggers;
        const after = ofType((await runEdgeProgram({ ...devConfig, idleTimeoutSeconds: "900" })).resources, "command:remote:Command")[0].inputs.triggers;
        assert.notEqual(after[0], before[0]);
        assert.equal(after[2], before[2]);
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
        const userData = await resolveOutput<string>(instances(resources).find((r) => r.name === "backends-backend-1")!.inputs.userData);
        assert.match(userData, /"ghcr\.io\/acme\/ws-app:1\.4"/);
        assert.doesNotMatch(userData, /docker login/);
    });

    it("serves a user-supplied certificate instead of issuing an edge certificate", async () => {
        const certificate = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n";
        const { resources } = await runEdgeProgram({ ...devConfig, domainName: "ws.example.com", tlsCertificate: certificate, tlsPrivateKey: "-----BEGIN PRIVATE KEY-----\nTUlJQg==\n-----END PRIVATE KEY-----\n" });
        assert.equal(ofType(resources, "tls:index/certRequest:CertRequest").find((r) => r.name === "edge-edge"), undefined);
        const [deploy] = ofType(resources, "command:remote:Command");
        const bundle = Object.fromEntries(String(deploy.inputs.stdin).trim().split("\n").map((line) => line.split(" ")));
        assert.equal(Buffer.from(bundle["tls/edge.crt"], "base64").toString(), certificate);
    });

    it("scales to five backends over three zones and builds an arm64 image for Graviton types", async () => {
        const { resources, outputs } = await runEdgeProgram({ ...devConfig, backendCount: "5", backendInstanceType: "c7g.large" });
        const backends = instances(resources).filter((r) => r.name.startsWith("backends"));
        assert.equal(backends.length, 5);
        assert.deepEqual(await Promise.all(backends.map((r) => resolveOutput(r.inputs.subnetId))), ["subnet-a", "subnet-b", "subnet-c", "subnet-a", "subnet-b"]);
        assert.equal(ofType(resources, "docker:index/image:Image")[0].inputs.build.platform, "linux/arm64");
        assert.equal((outputs.backendPrivateIps as string[]).length, 5);
    });
});

describe("Pulumi.yaml", () => {
    const project = parseYaml(readFileSync(join(__dirname, "..", "Pulumi.yaml"), "utf8"));
    const dev = parseYaml(readFileSync(join(__dirname, "..", "Pulumi.dev.yaml"), "utf8"));

    it("declares every setting with a type and a description, and the validator's defaults", () => {
        assert.deepEqual(Object.keys(project.config).sort(), [...settingKeys].sort());
        for (const [key, declaration] of Object.entries<any>(project.config)) {
            assert.ok(declaration.type && declaration.description, key);
            const expected = (settingDefaults as Record<string, string>)[key];
            const declared = declaration.default === undefined ? undefined : typeof declaration.default === "string" ? declaration.default : JSON.stringify(declaration.default);
            assert.equal(declared, expected === undefined ? undefined : declaration.type === "array" ? JSON.stringify(JSON.parse(expected)) : expected, key);
        }
    });

    it("is previewed on every pull request after the tests, commented on the PR, with the guardrails", () => {
        const workflow = parseYaml(readFileSync(join(__dirname, "..", ".github", "workflows", "pull-request.yml"), "utf8"));
        assert.ok("pull_request" in workflow.on);
        assert.ok(workflow.jobs.test.steps.some((step: any) => /bash \.ci\/run/.test(step.run ?? "")), "the test job runs .ci/run");
        assert.deepEqual(workflow.jobs.preview.needs, "test");
        const preview = workflow.jobs.preview.steps.find((step: any) => String(step.uses).startsWith("pulumi/actions@"));
        assert.equal(preview.with.command, "preview");
        assert.equal(preview.with["stack-name"], "dev");
        assert.equal(preview.with["comment-on-pr"], true);
        assert.equal(preview.with.policyPacks, "policy");
        assert.match(preview.env.PULUMI_ACCESS_TOKEN, /secrets\.PULUMI_ACCESS_TOKEN/);
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
