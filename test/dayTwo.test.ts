// Day two on AWS: for each change a user makes after the first `pulumi up`, what the next `up`
// replaces, updates or leaves alone — the program run before and after under mocks, the
// providers' replace rules applied (test/support/changePlan.ts). The change matrix in docs/aws.md
// says the same in words; what happens to open sockets follows from these actions.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { sha256 } from "../components/edgeDeploy";
import { cpuArchitecture } from "../components/instanceDefaults";
import { SettingsError } from "../settings/edgeSettings";
import { type Plan, type ProgramState, planBetween, resourceKey, withAction } from "./support/changePlan";
import { bundleFiles, named, type RegisteredResource, resolveOutput, runEdgeProgram } from "./support/pulumiProgram";

const dev = { adminCidrs: '["203.0.113.0/24"]' };
const backendParts = (n: number) => [
    `edge-backend-${n}-instance-check`,
    `edge-backend-${n}-system-check`,
    `backends-backend-${n}`,
    `backends-backend-${n}-deploy`,
    `backends-backend-${n}-health`,
    `backends-backend-${n}-host`,
    `backends-backend-${n}-script`,
];
const certificateParts = (name: string) => [`edge-${name}`, `edge-${name}`, `edge-${name}`]; // key, request, certificate

/** Everything the plan touches, as `action name` lines, sorted. */
function touched(plan: Plan): string[] {
    return [...plan.entries()]
        .filter(([, action]) => action !== "same")
        .map(([key, action]) => `${action} ${key.split("::")[1]}`)
        .sort();
}

const change = (before: ProgramState, after: ProgramState) => planBetween(before, after);
const instance = (name: string) => resourceKey("aws:ec2/instance:Instance", name);
const certificate = (name: string) => resourceKey("tls:index/locallySignedCert:LocallySignedCert", name);
const hostKey = (name: string) => resourceKey("tls:index/privateKey:PrivateKey", name);
const builtImage = resourceKey("docker:index/image:Image", "backends-app");

describe("the change matrix: what `pulumi up` does after each change", () => {
    it("nothing changed: two runs register identical inputs, and nothing is touched", async () => {
        const [first, second] = [await runEdgeProgram(dev), await runEdgeProgram(dev)];
        const strip = (r: RegisteredResource) => ({ type: r.type, name: r.name, inputs: JSON.stringify(r.inputs), options: r.options });
        assert.deepEqual(second.resources.map(strip), first.resources.map(strip));
        assert.deepEqual(touched(await change({ config: dev }, { config: dev })), []);
    });

    it("no input of any resource holds a path of this checkout", async () => {
        const { resources } = await runEdgeProgram(dev);
        const checkout = require("node:path").resolve(__dirname, "..");
        for (const resource of resources) {
            const source = (resource.inputs.source as { path?: Promise<string> } | undefined)?.path;
            const inputs = JSON.stringify(resource.inputs) + (source ? await source : "");
            assert.ok(!inputs.includes(checkout), `${resource.type} ${resource.name} holds ${checkout}`);
        }
    });

    it("an edge setting (connectionsPerAddress): one deploy to the proxy, a reload", async () => {
        assert.deepEqual(touched(await change({ config: dev }, { config: { ...dev, connectionsPerAddress: "500" } })), [
            "replace edge-deploy",
        ]);
    });

    it("affinity or allowedOrigins: one deploy to the proxy, a reload; nothing on AWS changes", async () => {
        assert.deepEqual(
            touched(
                await change({ config: dev }, { config: { ...dev, affinity: "cookie", allowedOrigins: '["https://app.example.com"]' } }),
            ),
            ["replace edge-deploy"],
        );
    });

    it("tunnelBufferKiB or activeHealthChecks: one deploy to the proxy, a reload (the agent stops or starts with it)", async () => {
        assert.deepEqual(touched(await change({ config: dev }, { config: { ...dev, tunnelBufferKiB: "1" } })), ["replace edge-deploy"]);
        assert.deepEqual(touched(await change({ config: dev }, { config: { ...dev, activeHealthChecks: "false" } })), [
            "replace edge-deploy",
        ]);
    });

    it("a new release of this project (its socket ceiling, its health agent): one deploy to the proxy, which carries both", async () => {
        // The deploy's stdin is the release: a new ceiling or agent script changes it, and a changed
        // stdin replaces the deploy command (the planner's Command rule, as for every edge setting).
        const deploy = named((await runEdgeProgram(dev)).resources, "edge-deploy");
        const release = bundleFiles(deploy.inputs.stdin);
        assert.equal(release["backend-health-agent.sh"], readFileSync(join(__dirname, "../deploy/backend-health-agent.sh"), "utf8"));
        assert.match(release["nginx.conf"], /limit_conn edge_sockets 38550;/);
        // What the release carries is what its triggers hash, so a new release is a replacement, whatever changed in it.
        const triggers = (await resolveOutput(deploy.inputs.triggers)) as string[];
        assert.ok(triggers.includes(`config:${sha256(release["nginx.conf"])}`), "the config's digest is a trigger");
        assert.ok(triggers.includes(`agent:${sha256(release["backend-health-agent.sh"])}`), "the agent script's digest is a trigger");
    });

    it("a new deploy script (this release's: NGINX restarted by systemd if it dies): each proxy's script copied and deployed again, a reload", async () => {
        // The script's digest is a trigger of its copy and of the deploy, so a new script replaces
        // both (the planner's Command rule): the new script runs on every proxy, one after another.
        const script = readFileSync(join(__dirname, "../deploy/deploy-edge-config.sh"), "utf8");
        assert.match(script, /Restart=on-failure/, "the script installs NGINX's restart drop-in");
        const { resources } = await runEdgeProgram({ ...dev, proxyCount: "2" });
        for (const name of ["edge-deploy", "edge-deploy-2"]) {
            const copyTriggers = (await resolveOutput(named(resources, `${name}-script`).inputs.triggers)) as string[];
            assert.ok(copyTriggers.includes(sha256(script)), `${name}-script: the script's digest is a trigger of its copy`);
            const deployTriggers = (await resolveOutput(named(resources, name).inputs.triggers)) as string[];
            assert.ok(deployTriggers.includes(`script:${sha256(script)}`), `${name}: the script's digest is a trigger of the deploy`);
        }
        assert.ok(
            named(resources, "edge-deploy-2").dependencies.includes(named(resources, "edge-deploy").urn),
            "one proxy after the other",
        );
    });

    it("this release's cap behind the balancer (55,000 per proxy): a larger proxy's config changes, each proxy's deploy in turn, a reload", async () => {
        // A c6i.xlarge proxy was told 84,811 behind the balancer; its release now says 55,000, so its
        // config digest (a trigger) changes and each deploy runs again. Open sockets past 55,000 stay:
        // limit_conn refuses new connections only.
        const { resources } = await runEdgeProgram({ ...dev, proxyCount: "2", proxyInstanceType: "c6i.xlarge" });
        for (const name of ["edge-deploy", "edge-deploy-2"]) {
            const config = bundleFiles(named(resources, name).inputs.stdin)["nginx.conf"];
            assert.match(config, /limit_conn edge_sockets 55000;/, name);
            const triggers = (await resolveOutput(named(resources, name).inputs.triggers)) as string[];
            assert.ok(triggers.includes(`config:${sha256(config)}`), `${name}: the config's digest is a trigger`);
        }
        const single = named((await runEdgeProgram({ ...dev, proxyInstanceType: "c6i.xlarge" })).resources, "edge-deploy");
        assert.match(
            bundleFiles(single.inputs.stdin)["nginx.conf"],
            /limit_conn edge_sockets 8482;/,
            "one proxy on its own keeps its memory's ceiling (84,811, counted on 10 keys past NGINX's 65,535 per key)",
        );
    });

    it("an edge setting with three proxies: each proxy's deploy, in turn; nothing on AWS changes", async () => {
        const three = { ...dev, proxyCount: "3" };
        assert.deepEqual(touched(await change({ config: three }, { config: { ...three, connectionsPerAddress: "500" } })), [
            "replace edge-deploy",
            "replace edge-deploy-2",
            "replace edge-deploy-3",
        ]);
    });

    it("proxyCount 3 → 2: the third proxy's registrations, drain, VM and deploy go; the others untouched", async () => {
        const plan = await change({ config: { ...dev, proxyCount: "3" } }, { config: { ...dev, proxyCount: "2" } });
        assert.deepEqual(withAction(plan, "delete"), [
            "edge-443-3",
            "edge-deploy-3",
            "edge-deploy-3-script",
            "edge-drain-3",
            "edge-proxy-3",
            "edge-proxy-3-deploy",
            "edge-proxy-3-deploy",
            "edge-proxy-3-host",
            "edge-proxy-3-instance-check",
            "edge-proxy-3-system-check",
        ]);
        assert.deepEqual(withAction(plan, "replace", "update", "update (stop and start)", "create"), ["edge-dashboard"]);
    });

    it("alarmEmail: only the topic's email subscription is created", async () => {
        assert.deepEqual(touched(await change({ config: dev }, { config: { ...dev, alarmEmail: "ops@example.com" } })), [
            "create edge-alarms-email",
        ]);
    });

    it("idleTimeoutSeconds: the proxy reloads, and the backends restart one by one for their new ping interval", async () => {
        const plan = await change({ config: dev }, { config: { ...dev, idleTimeoutSeconds: "60" } });
        const rolled = [1, 2, 3].flatMap((n) => [`backends-backend-${n}-deploy`, `backends-backend-${n}-health`]);
        assert.deepEqual(withAction(plan, "replace"), [...rolled, "edge-deploy"]);
        assert.deepEqual(withAction(plan, "update", "update (stop and start)", "create", "delete"), []);
    });

    it("backendCount 3 → 4: a new backend with its own certificate and gate; the others untouched; the proxy reloads", async () => {
        const plan = await change({ config: dev }, { config: { ...dev, backendCount: "4" } });
        assert.deepEqual(withAction(plan, "create"), [...backendParts(4), ...certificateParts("backend-4")].sort());
        assert.deepEqual(withAction(plan, "replace", "update", "update (stop and start)", "delete"), ["edge-dashboard", "edge-deploy"]);
    });

    it("backendCount 4 → 3: the fourth backend goes after the proxy stopped sending it new clients", async () => {
        const plan = await change({ config: { ...dev, backendCount: "4" } }, { config: dev });
        assert.deepEqual(withAction(plan, "delete"), [...backendParts(4), ...certificateParts("backend-4")].sort());
        assert.deepEqual(withAction(plan, "replace", "update", "update (stop and start)", "create"), ["edge-dashboard", "edge-deploy"]);
    });

    it("a new image of the user's own: each backend deployed and gated in turn; no instance, no proxy change", async () => {
        const plan = await change(
            { config: { ...dev, backendImage: "ghcr.io/acme/ws-app:1.4" } },
            { config: { ...dev, backendImage: "ghcr.io/acme/ws-app:1.5" } },
        );
        assert.deepEqual(
            touched(plan),
            [1, 2, 3].flatMap((n) => [`replace backends-backend-${n}-deploy`, `replace backends-backend-${n}-health`]),
        );
    });

    it("a rebuilt backend/ image (new digest): the same rolling deploy", async () => {
        const plan = await change({ config: dev }, { config: dev, replaced: [builtImage] });
        assert.deepEqual(touched(plan), [
            "replace backends-app",
            ...[1, 2, 3].flatMap((n) => [`replace backends-backend-${n}-deploy`, `replace backends-backend-${n}-health`]),
        ]);
    });

    it("a new Amazon Linux or Debian AMI: nothing is replaced", async () => {
        assert.deepEqual(touched(await change({ config: dev }, { config: dev, options: { amiRelease: "2026.12" } })), []);
    });

    it("a renewed backend certificate: only that backend's deploy (a TLS reload in the app) and gate", async () => {
        const plan = await change({ config: dev }, { config: dev, replaced: [certificate("edge-backend-2")] });
        assert.deepEqual(touched(plan), [
            "replace backends-backend-2-deploy",
            "replace backends-backend-2-health",
            "replace edge-backend-2",
        ]);
    });

    it("a renewed edge certificate: one deploy to the proxy, a reload", async () => {
        const plan = await change({ config: dev }, { config: dev, replaced: [certificate("edge-edge")] });
        assert.deepEqual(touched(plan), ["replace edge-deploy", "replace edge-edge"]);
    });

    it("a user-supplied certificate instead of the stack's: the issued one goes, one deploy to the proxy", async () => {
        const certificate = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n";
        const own = { ...dev, domainName: "ws.example.com" };
        const plan = await change(
            { config: own },
            {
                config: {
                    ...own,
                    tlsCertificate: certificate,
                    tlsPrivateKey: "-----BEGIN PRIVATE KEY-----\nTUlJQg==\n-----END PRIVATE KEY-----\n",
                },
            },
        );
        assert.deepEqual(touched(plan), ["delete edge-edge", "delete edge-edge", "delete edge-edge", "replace edge-deploy"]);
    });

    it("a replaced or lost proxy VM: the address moves to the new one and it is deployed to; backends untouched", async () => {
        const plan = await change({ config: dev }, { config: dev, replaced: [instance("edge-proxy")] });
        // The instance and its address association, both named edge-proxy.
        assert.deepEqual(touched(plan), [
            "replace edge-deploy",
            "replace edge-deploy-script",
            "replace edge-proxy",
            "replace edge-proxy",
            // The alarms and the dashboard follow the new instance ID.
            "update edge-dashboard",
            "update edge-proxy-instance-check",
            "update edge-proxy-system-check",
        ]);
    });

    it("a new proxy host key: the VM is replaced (user data), and each backend deploy runs again through it (a TLS reload, no restart)", async () => {
        const plan = await change({ config: dev }, { config: dev, replaced: [hostKey("edge-proxy-host")] });
        assert.deepEqual(withAction(plan, "replace"), ["edge-deploy", "edge-deploy-script", "edge-proxy", "edge-proxy", "edge-proxy-host"]);
        assert.deepEqual(
            withAction(plan, "update"),
            [
                ...[1, 2, 3].flatMap((n) => [
                    `backends-backend-${n}-deploy`,
                    `backends-backend-${n}-health`,
                    `backends-backend-${n}-script`,
                ]),
                "edge-dashboard",
                "edge-proxy-instance-check",
                "edge-proxy-system-check",
            ].sort(),
        );
    });

    it("backendInstanceType: each backend stopped and started in place, the next only once the one before passed its gate", async () => {
        const plan = await change({ config: dev }, { config: { ...dev, backendInstanceType: "t3.medium" } });
        assert.deepEqual(withAction(plan, "update (stop and start)"), ["backends-backend-1", "backends-backend-2", "backends-backend-3"]);
        assert.deepEqual(withAction(plan, "replace"), [
            "backends-backend-1-health",
            "backends-backend-2-health",
            "backends-backend-3-health",
        ]);
        assert.deepEqual(withAction(plan, "create", "delete", "update"), []);
    });

    it("proxyInstanceType: the proxy is stopped and started (every socket closes) and redeployed sized for its new memory", async () => {
        const plan = await change({ config: dev }, { config: { ...dev, proxyInstanceType: "c6i.xlarge" } });
        assert.deepEqual(touched(plan), ["replace edge-deploy", "update (stop and start) edge-proxy"]);
        const { outputs } = await runEdgeProgram({ ...dev, proxyInstanceType: "c6i.xlarge" });
        assert.equal(outputs.maxSockets, 84811);
        assert.match(String(outputs.nginxConfig), /^worker_processes 4;$/m);
    });
});

describe("the rules behind the matrix, as the program states them", () => {
    it("protects the CA's key and certificate, so no change can replace what every client trusts", async () => {
        const { resources } = await runEdgeProgram(dev);
        const protectedOnes = resources.filter((r) => r.options.protect).map((r) => `${r.type} ${r.name}`);
        assert.deepEqual(protectedOnes.sort(), [
            "tls:index/privateKey:PrivateKey edge-ca",
            "tls:index/selfSignedCert:SelfSignedCert edge-ca",
        ]);
    });

    it("ignores AMI changes on every instance, and replaces (not reboots) an instance whose user data changes", async () => {
        const { resources } = await runEdgeProgram(dev);
        for (const instance of resources.filter((r) => r.type === "aws:ec2/instance:Instance")) {
            assert.deepEqual(instance.options.ignoreChanges, ["ami"], instance.name);
            assert.equal(instance.inputs.userDataReplaceOnChange, true, instance.name);
        }
    });

    it("lets the Elastic IP move to a replacement VM created before the old one is deleted", async () => {
        const { resources } = await runEdgeProgram(dev);
        const association = resources.find((r) => r.type === "aws:ec2/eipAssociation:EipAssociation")!;
        assert.equal(association.inputs.allowReassociation, true);
        assert.equal(association.options.deleteBeforeReplace, false);
    });

    it("admits at most what the proxy's memory holds, or the maxSockets setting when lower", async () => {
        const ceiling = async (config: Record<string, string>) => {
            const { outputs } = await runEdgeProgram({ ...dev, ...config });
            const limit = /limit_conn edge_sockets ([0-9]+);/.exec(String(outputs.nginxConfig))?.[1];
            return [outputs.maxSockets, Number(limit)];
        };
        assert.deepEqual(await ceiling({}), [38550, 38550]);
        assert.deepEqual(await ceiling({ maxSockets: "20000" }), [20000, 20000]);
        assert.deepEqual(await ceiling({ maxSockets: "100000" }), [38550, 38550], "never more than the memory holds");
        assert.deepEqual(await ceiling({ proxyInstanceType: "t3.small" }), [15420, 15420]);
    });

    it("exports when every certificate expires", async () => {
        const { outputs } = await runEdgeProgram(dev, { validityEndTime: "2027-10-01T00:00:00Z" });
        assert.deepEqual(Object.keys(outputs.certificateExpiry as object).sort(), [
            "backend-1",
            "backend-2",
            "backend-3",
            "ca",
            "edge",
            "proxy-client",
        ]);
        assert.equal((outputs.certificateExpiry as Record<string, string>)["backend-2"], "2027-10-01T00:00:00Z");
    });

    it("refuses a TLS key stored in plain text, before registering anything", async () => {
        const registered: RegisteredResource[] = [];
        const key = "-----BEGIN PRIVATE KEY-----\nTUlJQg==\n-----END PRIVATE KEY-----\n";
        const certificate = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n";
        await assert.rejects(
            () =>
                runEdgeProgram(
                    { ...dev, domainName: "ws.example.com", tlsCertificate: certificate, tlsPrivateKey: key },
                    { registered, plaintext: ["tlsPrivateKey"] },
                ),
            (error: Error) =>
                error instanceof SettingsError &&
                /wss-edge:tlsPrivateKey = \[secret\]: is stored in plain text; set it with `pulumi config set --secret tlsPrivateKey/.test(
                    error.message,
                ) &&
                !error.message.includes("TUlJQg"),
        );
        assert.deepEqual(registered, []);
    });

    it("waits for first boot and fails with cloud-init's own account of a failed one", async () => {
        const { resources } = await runEdgeProgram(dev);
        for (const command of resources.filter((r) => r.type === "command:remote:Command")) {
            const create = await resolveOutput<string>(command.inputs.create);
            assert.match(create, /^rc=0; cloud-init status --wait >\/dev\/null 2>&1 \|\| rc=\$\?\n/, command.name);
            assert.match(create, /cloud-init status --long >&2/, command.name);
            assert.doesNotMatch(create, /cloud-init status --wait >\/dev\/null;/, command.name);
        }
    });

    it("classifies A1 and the g families as arm64, the rest as x86_64", () => {
        assert.deepEqual(
            ["a1.large", "t4g.small", "c7gn.2xlarge", "m6gd.large", "g5g.xlarge", "c6i.large", "g5.xlarge", "g4dn.xlarge", "t3.small"].map(
                cpuArchitecture,
            ),
            ["arm64", "arm64", "arm64", "arm64", "arm64", "x86_64", "x86_64", "x86_64", "x86_64"],
        );
    });
});
