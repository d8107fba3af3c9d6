// The load-balanced shape (proxyCount 2 or more) under Pulumi's mocks: the Network Load Balancer,
// its listeners, target groups and attachments, the proxies over the zones, the security groups
// rule by rule, the config every proxy gets, the rolling order, the drain, and the alarms.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { maxDeregistrationDelaySeconds } from "../components/edgeLoadBalancer";
import { proxyDrainCommand } from "../host/proxyHost";
import { planBetween, resourceKey } from "./support/changePlan";
import { bundleFiles, mockVpcCidr, named, ofType, type RegisteredResource, runEdgeProgram } from "./support/pulumiProgram";

const adminCidrs = '["203.0.113.0/24"]';
const urnOf = (resources: RegisteredResource[], name: string) => named(resources, name).urn;

for (const proxyCount of [2, 3]) {
    describe(`the load-balanced edge with ${proxyCount} proxies, under mocks`, () => {
        const config = { adminCidrs, proxyCount: String(proxyCount), httpRedirect: "true", drainTimeoutSeconds: "600" };
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

        it(`registers each of the ${proxyCount} proxies in both target groups, and the proxies sit in distinct zones`, () => {
            const attachments = ofType(resources, "aws:lb/targetGroupAttachment:TargetGroupAttachment");
            assert.equal(attachments.length, 2 * proxyCount);
            const proxyIds = proxies.map((p) => `${p.name}-id`).sort();
            for (const port of [443, 80]) {
                const atPort = attachments.filter((a) => a.inputs.port === port);
                assert.deepEqual(atPort.map((a) => a.inputs.targetId).sort(), proxyIds);
                assert.ok(atPort.every((a) => a.inputs.targetGroupArn.includes(`targetgroup/edge-${port}/`)));
            }
            assert.equal(proxies.length, proxyCount);
            assert.equal(new Set(proxies.map((p) => p.inputs.subnetId)).size, proxyCount, "one subnet (zone) each");
            assert.deepEqual(
                proxies.map((p) => p.inputs.tags.Name),
                Array.from({ length: proxyCount }, (_, i) => `wss-edge-dev-proxy-${i + 1}`),
            );
            assert.equal(proxies[0].name, "edge-proxy", "the first proxy keeps its name: growing the edge does not replace it");
        });

        it("admits clients only at the balancer: the proxies' 443 and 80 take the balancer's group, SSH only the admins", () => {
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
                    { port: 22, cidrs: ["203.0.113.0/24"], groups: [], self: false },
                    { port: 9113, cidrs: [], groups: [], self: true },
                ],
            );
        });

        it("gives every proxy the same config: PROXY protocol on its listeners, believed from the VPC only, one upstream", () => {
            const configs = Array.from(
                { length: proxyCount },
                (_, i) => bundleFiles(named(resources, i === 0 ? "edge-deploy" : `edge-deploy-${i + 1}`).inputs.stdin)["nginx.conf"],
            );
            assert.equal(new Set(configs).size, 1, "identical upstream lists and hashing on every proxy");
            const [config] = configs;
            assert.match(config, /listen 443 ssl proxy_protocol default_server reuseport;/);
            assert.match(config, /listen 80 proxy_protocol;/);
            assert.match(config, new RegExp(`set_real_ip_from ${mockVpcCidr.replace(/\./g, "\\.")};\\n\\s*real_ip_header proxy_protocol;`));
            assert.equal((config.match(/set_real_ip_from/g) ?? []).length, 1, "no other range is believed");
            assert.match(config, /ip_hash;\n(\s*server 10\.0\.\d\.\d+:8443 [^\n]+\n){3}/);
            assert.equal(config, outputs.nginxConfig);
        });

        it("deploys one proxy at a time, after the backends' health gates", () => {
            const deploys = Array.from({ length: proxyCount }, (_, i) =>
                named(resources, i === 0 ? "edge-deploy" : `edge-deploy-${i + 1}`),
            );
            assert.ok(
                ofType(resources, "command:remote:Command")
                    .filter((c) => c.name.endsWith("-health-gate"))
                    .every((gate) => deploys[0].dependencies.includes(gate.urn)),
                "the first proxy waits for every backend's gate",
            );
            for (let i = 1; i < proxyCount; i++) {
                assert.ok(deploys[i].dependencies.includes(deploys[i - 1].urn), `${deploys[i].name} waits for ${deploys[i - 1].name}`);
                assert.ok(!deploys[i - 1].dependencies.includes(deploys[i].urn));
            }
        });

        it("drains a leaving proxy before its VM goes: deregistered first (the attachment depends on the drain), then drained, then deleted", () => {
            for (let i = 1; i <= proxyCount; i++) {
                const drain = named(resources, `edge-drain-${i}`);
                assert.equal(drain.inputs.create, undefined, "nothing to do on create");
                assert.equal(drain.inputs.delete, proxyDrainCommand(600));
                const vm = proxies[i - 1];
                assert.deepEqual(drain.inputs.triggers, [`${vm.name}-id`]);
                assert.ok(drain.dependencies.includes(vm.urn), `${drain.name} depends on its VM, so the VM is deleted after it`);
                for (const port of [443, 80]) {
                    assert.ok(named(resources, `edge-${port}-${i}`).dependencies.includes(urnOf(resources, `edge-drain-${i}`)));
                }
            }
            assert.match(proxyDrainCommand(600), /deadline=\$\(\(SECONDS \+ 600\)\)/);
        });

        it("names the balancer in the endpoint and the edge certificate, and lists every proxy's address", () => {
            const dnsName = "edge-0123456789abcdef.elb.eu-west-1.amazonaws.com";
            assert.equal(outputs.endpoint, `wss://${dnsName}/`);
            assert.equal(outputs.loadBalancerDnsName, dnsName);
            assert.deepEqual(ofType(resources, "tls:index/certRequest:CertRequest").find((r) => r.name === "edge-edge")?.inputs.dnsNames, [
                dnsName,
            ]);
            assert.deepEqual(
                outputs.proxyPublicIps,
                Array.from({ length: proxyCount }, (_, i) => `203.0.113.${i + 1}`),
            );
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
            for (let i = 1; i <= proxyCount; i++) {
                assert.ok(statusAlarms.some((a) => a.inputs.name === `wss-edge-dev-proxy-${i}-system-check`));
            }
        });
    });
}

describe("the drain bound", () => {
    it("is drainTimeoutSeconds, within AWS's longest deregistration delay", async () => {
        const { resources } = await runEdgeProgram({ adminCidrs, proxyCount: "2" });
        const group = ofType(resources, "aws:lb/targetGroup:TargetGroup")[0];
        assert.equal(group.inputs.deregistrationDelay, maxDeregistrationDelaySeconds, "the default 3600 s is AWS's maximum");
        assert.equal(named(resources, "edge-drain-1").inputs.delete, proxyDrainCommand(3600));
    });
});

describe("changing the shape on day two", () => {
    it("growing from one proxy to three keeps the first VM and adds two, behind a new balancer; the Elastic IP goes", async () => {
        const plan = await planBetween({ config: { adminCidrs } }, { config: { adminCidrs, proxyCount: "3" } });
        // Only its Name tag changes (…-proxy becomes …-proxy-1): in place, without a stop.
        assert.equal(plan.get(resourceKey("aws:ec2/instance:Instance", "edge-proxy")), "update");
        assert.equal(plan.get(resourceKey("aws:ec2/instance:Instance", "edge-proxy-2")), "create");
        assert.equal(plan.get(resourceKey("aws:ec2/instance:Instance", "edge-proxy-3")), "create");
        assert.equal(plan.get(resourceKey("aws:lb/loadBalancer:LoadBalancer", "edge")), "create");
        assert.equal(plan.get(resourceKey("aws:ec2/eip:Eip", "edge")), "delete");
        assert.equal(plan.get(resourceKey("aws:ec2/securityGroup:SecurityGroup", "edge-proxy")), "update", "its rules change in place");
        // The config changes (PROXY protocol), so the first proxy is redeployed, then the new ones in turn.
        assert.equal(plan.get(resourceKey("command:remote:Command", "edge-deploy")), "replace");
    });

    it("a third proxy added to two leaves the first two VMs and their registrations alone", async () => {
        const plan = await planBetween({ config: { adminCidrs, proxyCount: "2" } }, { config: { adminCidrs, proxyCount: "3" } });
        for (const name of ["edge-proxy", "edge-proxy-2"]) assert.equal(plan.get(resourceKey("aws:ec2/instance:Instance", name)), "same");
        for (const name of ["edge-443-1", "edge-443-2"])
            assert.equal(plan.get(resourceKey("aws:lb/targetGroupAttachment:TargetGroupAttachment", name)), "same");
        assert.equal(plan.get(resourceKey("aws:lb/targetGroupAttachment:TargetGroupAttachment", "edge-443-3")), "create");
        assert.equal(plan.get(resourceKey("aws:lb/loadBalancer:LoadBalancer", "edge")), "same");
    });

    it("a replaced proxy VM is drained and redeployed: its drain, registrations and deploy follow the new instance", async () => {
        const plan = await planBetween(
            { config: { adminCidrs, proxyCount: "2" } },
            { config: { adminCidrs, proxyCount: "2" }, replaced: [resourceKey("aws:ec2/instance:Instance", "edge-proxy-2")] },
        );
        assert.equal(plan.get(resourceKey("command:remote:Command", "edge-drain-2")), "replace");
        assert.equal(plan.get(resourceKey("aws:lb/targetGroupAttachment:TargetGroupAttachment", "edge-443-2")), "replace");
        assert.equal(plan.get(resourceKey("command:remote:Command", "edge-deploy-2")), "replace");
        assert.equal(plan.get(resourceKey("aws:ec2/instance:Instance", "edge-proxy")), "same");
        assert.equal(plan.get(resourceKey("command:remote:Command", "edge-drain-1")), "same");
    });
});
