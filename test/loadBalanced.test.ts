// The load-balanced shape (proxyCount 2 or more) under Pulumi's mocks: the Network Load Balancer,
// its listeners and target groups, the proxies' Auto Scaling group over the zones, the security
// groups rule by rule, the release every proxy gets, the rolling order, the drain, and the alarms.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { maxDeregistrationDelaySeconds } from "../components/edgeLoadBalancer";
import { planBetween, resourceKey } from "./support/changePlan";
import { bundleFiles, mockVpcCidr, named, ofType, type RegisteredResource, runEdgeProgram } from "./support/pulumiProgram";

for (const proxyCount of [2, 3]) {
    describe(`the load-balanced edge with ${proxyCount} proxies, under mocks`, () => {
        const config = { proxyCount: String(proxyCount), httpRedirect: "true", drainTimeoutSeconds: "600" };
        let resources: RegisteredResource[] = [];
        let outputs: Record<string, any> = {};
        let proxies: RegisteredResource[] = [];
        // The mocks are global: one program run at a time, when this suite's turn comes.
        before(async () => {
            ({ resources, outputs } = await runEdgeProgram(config));
            proxies = ofType(resources, "aws:ec2/instance:Instance").filter((i) => i.inputs.tags.Role === "wss-edge-proxy");
        });

        it("puts an internet-facing, cross-zone Network Load Balancer over every zone's subnet, in its own security group", () => {
            const [balancer] = ofType(resources, "aws:lb/loadBalancer:LoadBalancer");
            assert.equal(ofType(resources, "aws:lb/loadBalancer:LoadBalancer").length, 1);
            assert.equal(balancer.inputs.loadBalancerType, "network");
            assert.equal(balancer.inputs.internal, false);
            assert.equal(balancer.inputs.enableCrossZoneLoadBalancing, true);
            assert.deepEqual(balancer.inputs.subnets, ["subnet-a", "subnet-b", "subnet-c"]);
            assert.deepEqual(balancer.inputs.securityGroups, ["edge-load-balancer-id"]);
            assert.equal(ofType(resources, "aws:ec2/eip:Eip").length, 0, "no Elastic IP: clients reach the balancer");
            assert.equal(ofType(resources, "aws:ec2/eipAssociation:EipAssociation").length, 0);
        });

        it("listens on TCP 443 and 80, each forwarding to a target group of its port with PROXY protocol v2 and the drain delay", () => {
            const listeners = ofType(resources, "aws:lb/listener:Listener");
            assert.deepEqual(
                listeners.map((l) => [l.inputs.port, l.inputs.protocol, l.inputs.defaultActions[0].type]),
                [
                    [443, "TCP", "forward"],
                    [80, "TCP", "forward"],
                ],
            );
            for (const listener of listeners) {
                assert.match(listener.inputs.loadBalancerArn, /:loadbalancer\/net\/edge\//);
                assert.match(listener.inputs.defaultActions[0].targetGroupArn, new RegExp(`targetgroup/edge-${listener.inputs.port}/`));
            }
            const groups = ofType(resources, "aws:lb/targetGroup:TargetGroup");
            assert.equal(groups.length, 2);
            for (const group of groups) {
                assert.deepEqual(
                    {
                        protocol: group.inputs.protocol,
                        targetType: group.inputs.targetType,
                        vpcId: group.inputs.vpcId,
                        proxyProtocolV2: group.inputs.proxyProtocolV2,
                        preserveClientIp: group.inputs.preserveClientIp,
                        deregistrationDelay: group.inputs.deregistrationDelay,
                        connectionTermination: group.inputs.connectionTermination,
                        healthCheck: group.inputs.healthCheck,
                    },
                    {
                        protocol: "TCP",
                        targetType: "instance",
                        vpcId: "vpc-0default",
                        proxyProtocolV2: true,
                        // Off, so that the peer NGINX sees is the balancer, the only side whose header it believes.
                        preserveClientIp: "false",
                        deregistrationDelay: 600,
                        connectionTermination: true,
                        healthCheck: { protocol: "TCP", port: "traffic-port", interval: 10, healthyThreshold: 2, unhealthyThreshold: 2 },
                    },
                );
            }
        });

        it(`runs the ${proxyCount} proxies as an Auto Scaling group in both target groups, over every zone, replaced when the balancer finds one unhealthy`, () => {
            assert.deepEqual(proxies, [], "no proxy is a Pulumi instance: the group owns them");
            assert.equal(
                ofType(resources, "aws:lb/targetGroupAttachment:TargetGroupAttachment").length,
                0,
                "the group registers its proxies",
            );
            const [group] = ofType(resources, "aws:autoscaling/group:Group");
            assert.equal(group.type, "aws:autoscaling/group:Group");
            assert.deepEqual(
                [group.inputs.minSize, group.inputs.maxSize, group.inputs.desiredCapacity],
                [proxyCount, proxyCount, proxyCount],
            );
            assert.deepEqual(group.inputs.vpcZoneIdentifiers, ["subnet-a", "subnet-b", "subnet-c"]);
            assert.deepEqual(
                group.inputs.targetGroupArns.map((arn: string) => arn.split(":").at(-1)),
                ["targetgroup/edge-443/fedcba9876543210", "targetgroup/edge-80/fedcba9876543210"],
            );
            assert.equal(group.inputs.healthCheckType, "ELB", "a proxy the balancer finds unhealthy is replaced");
            assert.equal(group.inputs.healthCheckGracePeriod, 600, "time to boot and apply the current release first");
            assert.deepEqual(group.inputs.instanceRefresh, {
                strategy: "Rolling",
                preferences: {
                    minHealthyPercentage: 100,
                    maxHealthyPercentage: 200,
                    instanceWarmup: "60",
                    skipMatching: true,
                    autoRollback: true,
                },
            });
            const launchTemplate = ofType(resources, "aws:ec2/launchTemplate:LaunchTemplate")[0];
            assert.equal(group.inputs.launchTemplate.id, "edge-proxies-id");
            assert.match(group.inputs.launchTemplate.version, /^[0-9]+$/, "a version number, not $Latest: a new version starts a refresh");
            assert.equal(launchTemplate.inputs.metadataOptions.httpTokens, "required");
            assert.equal(launchTemplate.inputs.blockDeviceMappings[0].ebs.encrypted, "true");
            assert.equal(launchTemplate.inputs.iamInstanceProfile.arn, "arn:aws:iam::123456789012:role/edge-proxy");
            assert.equal(launchTemplate.inputs.keyName, undefined, "no key pair");
            const userData = Buffer.from(launchTemplate.inputs.userData, "base64").toString();
            assert.match(userData, /amazon-ssm-agent\.deb/);
            assert.match(
                userData,
                /apply-release edge s3:\/\/edge-releases\/edge current/,
                "a new proxy serves the current release with no push",
            );
        });

        it("waits for each instance refresh a new template version starts, after the group took it, and tells the drains as they go", () => {
            const [group] = ofType(resources, "aws:autoscaling/group:Group");
            const [launchTemplate] = ofType(resources, "aws:ec2/launchTemplate:LaunchTemplate");
            const waiter = named(resources, "edge-proxies-refresh");
            assert.match(waiter.inputs.create, /^bash (\S*\/)?deploy\/await-refresh\.sh$/);
            assert.equal(waiter.inputs.environment.WSS_EDGE_TARGETS, "asg:edge-proxies-id", "the group the release rolls over");
            assert.deepEqual(
                waiter.inputs.environment.WSS_EDGE_TARGET_GROUPS.split(" ").map((arn: string) => arn.split(":").at(-1)),
                ["targetgroup/edge-443/fedcba9876543210", "targetgroup/edge-80/fedcba9876543210"],
            );
            assert.deepEqual(
                waiter.inputs.triggers,
                [group.inputs.launchTemplate.version].map(Number),
                "it runs again for each new version, and only then",
            );
            assert.ok(waiter.dependencies.includes(group.urn), "it starts once the group took the new version, which started the refresh");
            assert.equal(launchTemplate.inputs.updateDefaultVersion, true);
        });

        it("admits clients only at the balancer: the proxies' 443 and 80 take the balancer's group; no SSH", () => {
            const group = (name: string) => {
                const found = ofType(resources, "aws:ec2/securityGroup:SecurityGroup").find((g) => g.name === name);
                assert.ok(found, `security group ${name}`);
                return found.inputs;
            };
            const balancer = group("edge-load-balancer");
            assert.deepEqual(
                balancer.ingress.map((r: any) => [r.fromPort, r.toPort, r.cidrBlocks, r.ipv6CidrBlocks]),
                [
                    [443, 443, ["0.0.0.0/0"], ["::/0"]],
                    [80, 80, ["0.0.0.0/0"], ["::/0"]],
                ],
            );
            assert.deepEqual(
                balancer.egress.map((r: any) => [r.fromPort, r.cidrBlocks]),
                [
                    [443, [mockVpcCidr]],
                    [80, [mockVpcCidr]],
                ],
            );
            const proxy = group("edge-proxy");
            assert.deepEqual(
                proxy.ingress.map((r: any) => ({
                    port: r.fromPort,
                    cidrs: [...(r.cidrBlocks ?? []), ...(r.ipv6CidrBlocks ?? [])],
                    groups: r.securityGroups ?? [],
                    self: r.self ?? false,
                })),
                [
                    { port: 443, cidrs: [], groups: ["edge-load-balancer-id"], self: false },
                    { port: 80, cidrs: [], groups: ["edge-load-balancer-id"], self: false },
                    { port: 9113, cidrs: [], groups: [], self: true },
                ],
            );
        });

        it("gives every proxy the same release: PROXY protocol on its listeners, believed from the VPC only, one upstream", () => {
            const config = bundleFiles(named(resources, "edge-deploy-release").inputs.content)["nginx.conf"];
            assert.match(config, /listen 443 ssl proxy_protocol default_server reuseport;/);
            assert.match(config, /listen 80 proxy_protocol;/);
            assert.match(config, new RegExp(`set_real_ip_from ${mockVpcCidr.replace(/\./g, "\\.")};\\n\\s*real_ip_header proxy_protocol;`));
            assert.equal((config.match(/set_real_ip_from/g) ?? []).length, 1, "no other range is believed");
            assert.match(config, /ip_hash;\n(\s*server 10\.0\.\d\.\d+:8443 [^\n]+\n){3}/);
            assert.equal(config, outputs.nginxConfig);
        });

        it("holds connectionsPerAddress per proxy, and says so: every proxy's limit is the setting, not a share of it", async () => {
            const config = bundleFiles(named(resources, "edge-deploy-release").inputs.content)["nginx.conf"];
            assert.match(config, /limit_conn per_client_address 1000;/);
            const { settingsTable } = await import("../settings/settingsTable");
            assert.match(settingsTable.connectionsPerAddress.description, /on each proxy.*up to proxyCount times this in all/);
        });

        it("rolls the release across the group's proxies one at a time, after the backends' gates, which run on the group's proxies", () => {
            const deploy = named(resources, "edge-deploy");
            assert.equal(deploy.inputs.environment.WSS_EDGE_TARGETS, "asg:edge-proxies-id");
            assert.equal(deploy.inputs.create, "bash deploy/ssm-send.sh", "which runs one VM at a time and stops at the first failure");
            for (const gate of ofType(resources, "command:local:Command").filter((c) => c.name.endsWith("-health"))) {
                assert.ok(deploy.dependencies.includes(gate.urn), `after ${gate.name}`);
                assert.equal(gate.inputs.environment.WSS_EDGE_TARGETS, "asg:edge-proxies-id");
            }
            assert.equal(ofType(resources, "command:remote:Command").length, 0, "nothing reaches a VM over SSH");
        });

        it("names the balancer in the endpoint and the edge certificate, and the proxies' group in the outputs", () => {
            const dnsName = "edge-0123456789abcdef.elb.eu-west-1.amazonaws.com";
            assert.equal(outputs.endpoint, `wss://${dnsName}/`);
            assert.equal(outputs.loadBalancerDnsName, dnsName);
            assert.deepEqual(ofType(resources, "tls:index/certRequest:CertRequest").find((r) => r.name === "edge-edge")?.inputs.dnsNames, [
                dnsName,
            ]);
            assert.equal(outputs.proxyAutoScalingGroup, "edge-proxies-id");
            assert.equal(outputs.proxyPublicIp, undefined);
        });

        it("alarms on unhealthy proxies in each target group, to the alarms' topic", () => {
            const alarms = ofType(resources, "aws:cloudwatch/metricAlarm:MetricAlarm").filter(
                (a) => a.inputs.namespace === "AWS/NetworkELB",
            );
            assert.deepEqual(
                alarms.map((a) => ({
                    name: a.inputs.name,
                    metric: a.inputs.metricName,
                    dimensions: a.inputs.dimensions,
                    threshold: a.inputs.threshold,
                    comparison: a.inputs.comparisonOperator,
                    periods: a.inputs.evaluationPeriods,
                    actions: a.inputs.alarmActions,
                })),
                [443, 80].map((port) => ({
                    name: `wss-edge-dev-unhealthy-proxies-${port}`,
                    metric: "UnHealthyHostCount",
                    dimensions: { TargetGroup: `targetgroup/edge-${port}/fedcba9876543210`, LoadBalancer: "net/edge/0123456789abcdef" },
                    threshold: 1,
                    comparison: "GreaterThanOrEqualToThreshold",
                    periods: 2,
                    actions: ["arn:aws:sns:eu-west-1:123456789012:edge-alarms"],
                })),
            );
            const statusAlarms = ofType(resources, "aws:cloudwatch/metricAlarm:MetricAlarm").filter(
                (a) => a.inputs.namespace === "AWS/EC2",
            );
            assert.ok(
                statusAlarms.every((a) => a.inputs.name.includes("backend")),
                "no status alarm per proxy: the group replaces an unhealthy one, and the target groups' alarms say so",
            );
        });
    });
}

describe("the drain bound", () => {
    it("is drainTimeoutSeconds, within AWS's longest deregistration delay", async () => {
        const { resources } = await runEdgeProgram({ proxyCount: "2" });
        const group = ofType(resources, "aws:lb/targetGroup:TargetGroup")[0];
        assert.equal(group.inputs.deregistrationDelay, maxDeregistrationDelaySeconds, "the default 3600 s is AWS's maximum");
    });
});

describe("changing the shape on day two", () => {
    it("growing from one proxy to three: the group and the balancer are created, the single VM and its Elastic IP go at the end", async () => {
        const plan = await planBetween({ config: {} }, { config: { proxyCount: "3" } });
        assert.equal(plan.get(resourceKey("aws:ec2/instance:Instance", "edge-proxy")), "delete");
        assert.equal(plan.get(resourceKey("aws:autoscaling/group:Group", "edge-proxies")), "create");
        assert.equal(plan.get(resourceKey("aws:lb/loadBalancer:LoadBalancer", "edge")), "create");
        assert.equal(plan.get(resourceKey("aws:ec2/eip:Eip", "edge")), "delete");
        assert.equal(plan.get(resourceKey("aws:ec2/securityGroup:SecurityGroup", "edge-proxy")), "update", "its rules change in place");
        // The config changes (PROXY protocol): a new release, rolled over the group.
        assert.equal(plan.get(resourceKey("command:local:Command", "edge-deploy")), "replace");
    });

    it("a third proxy added to two: the group grows in place, its template and every serving proxy untouched", async () => {
        const plan = await planBetween({ config: { proxyCount: "2" } }, { config: { proxyCount: "3" } });
        assert.equal(plan.get(resourceKey("aws:autoscaling/group:Group", "edge-proxies")), "update");
        assert.equal(plan.get(resourceKey("aws:ec2/launchTemplate:LaunchTemplate", "edge-proxies")), "same");
        assert.equal(plan.get(resourceKey("aws:lb/loadBalancer:LoadBalancer", "edge")), "same");
    });
});
