// The edge as a component: what another team's program gets when it imports it, and what a stack
// made before the component keeps (every resource found again through its aliases, none created
// or deleted), under Pulumi's mocks.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { interfaceServices } from "../components/backendEndpoints";
import { ipv6Gaps, networkProblems, offersIpv6 } from "../components/networkFacts";
import { type EarlierStacks, earlierStacksPath, inputsDigest } from "./golden/earlierStacks";
import { engineUrns, matchState } from "./support/engineUrns";
import { once } from "./support/once";
import {
    dualStackPlacement,
    named,
    ofType,
    type RegisteredResource,
    resolved,
    runEdgeProgram,
    teamPlacement,
} from "./support/pulumiProgram";

const earlier = JSON.parse(readFileSync(earlierStacksPath, "utf8")) as EarlierStacks;
const earlierUrns = (shape: string) => new Set(Object.keys(earlier.state[shape]));

const instances = (resources: RegisteredResource[]) => ofType(resources, "aws:ec2/instance:Instance");

describe("the edge as a component other programs import", () => {
    it("is a component class: require('./components').WssEdge", () => {
        const { WssEdge } = require("../components");
        assert.equal(typeof WssEdge, "function");
        assert.ok(WssEdge.prototype instanceof pulumi.ComponentResource);
    });

    for (const [shape, config] of Object.entries(earlier.shapes)) {
        it(`upgrades a stack made before it (${shape}): every resource found again by URN or alias, none deleted; created and changed only what this release adds (the component, the load's metrics and alarms)`, async () => {
            const first = await runEdgeProgram(config);
            const { created, deleted, claimed, urns } = matchState(first.resources, earlierUrns(shape));
            const alarm = (id: string) =>
                `urn:pulumi:dev::wss-edge::wss-edge:index:WssEdge$wss-edge:monitoring:EdgeMonitoring$aws:cloudwatch/metricAlarm:MetricAlarm::edge-${id}`;
            assert.deepEqual(
                created.sort(),
                [
                    "urn:pulumi:dev::wss-edge::wss-edge:index:WssEdge::edge",
                    ...["backend-sockets", "edge-health", ...(shape === "load-balanced" ? ["fleet-sockets"] : []), "proxy-sockets"].map(
                        alarm,
                    ),
                    // What waits for the group's instance refreshes: it finds none running, and passes.
                    ...(shape === "load-balanced"
                        ? [
                              "urn:pulumi:dev::wss-edge::wss-edge:index:WssEdge$wss-edge:proxy:ProxyGroup$command:local:Command::edge-proxies-refresh",
                          ]
                        : []),
                ].sort(),
            );
            assert.deepEqual(deleted, []);
            assert.equal(claimed.size, earlierUrns(shape).size);
            // Found under an alias, a resource is the same cloud object: the mocks give it its former name's ID and outputs, as the cloud would.
            const oldUrnOf = new Map([...claimed].map(([old, urn]) => [urn, old]));
            const formerNames = new Map<string, string>();
            for (const r of first.resources) {
                const old = oldUrnOf.get(urns.get(r.urn) as string);
                if (old === undefined) continue;
                const oldName = old.split("::").slice(3).join("::");
                if (oldName !== r.name) formerNames.set(`${r.type}::${r.name}`, oldName);
            }
            const upgraded = await runEdgeProgram(config, { formerNames });
            const again = matchState(upgraded.resources, earlierUrns(shape));
            const changed = upgraded.resources
                .filter((r) => r.type !== "wss-edge:index:WssEdge")
                .map((r) => ({ r, old: [...again.claimed].find(([, urn]) => urn === again.urns.get(r.urn))?.[0] as string }))
                .filter(({ r, old }) => earlier.state[shape][old] !== inputsDigest(r))
                .map(({ r }) => `${r.type}::${r.name}`);
            // This release's: every release carries the metric sender (so each is deployed, and each backend gated, again:
            // a reload, no container restarted), each role may send metrics, the dashboard graphs them.
            const backends = [1, 2, 3].flatMap((n) => [
                `aws:iam/rolePolicy:RolePolicy::edge-backends-backend-${n}`,
                `aws:s3/bucketObjectv2:BucketObjectv2::edge-backends-backend-${n}-release`,
                `command:local:Command::edge-backends-backend-${n}-deploy`,
                `command:local:Command::edge-backends-backend-${n}-health`,
            ]);
            assert.deepEqual(
                changed.filter((key) => !created.some((urn) => urn.endsWith(`::${key.split("::")[1]}`))).sort(),
                [
                    "aws:cloudwatch/dashboard:Dashboard::edge-dashboard",
                    "aws:iam/rolePolicy:RolePolicy::edge-proxy",
                    "aws:s3/bucketObjectv2:BucketObjectv2::edge-deploy-release",
                    "command:local:Command::edge-deploy",
                    ...backends,
                ].sort(),
                "resources whose inputs differ from the earlier stack's: pulumi up would update them",
            );
        });
    }

    it("would lose them without the aliases (the check can fail)", async () => {
        const { resources } = await runEdgeProgram(earlier.shapes["single-vm"]);
        const unaliased = resources.map((r) => ({ ...r, aliases: [] }));
        const { deleted } = matchState(unaliased, earlierUrns("single-vm"));
        assert.ok(deleted.length > 80, `${deleted.length} deleted`);
    });

    describe("in a team's own program: its VPC, subnets and zone, two proxies behind a balancer", () => {
        // Runs on first use, inside a test: program runs share Pulumi's global runtime, so they never overlap.
        const run = once(() => runEdgeProgram({}, { program: join(__dirname, "adopter", "index.ts") }));
        const teamVpc = "team-id";
        const publicSubnets = ["team-public-0-id", "team-public-1-id"];
        const privateSubnets = ["team-private-0-id", "team-private-1-id"];

        it("makes every security group in the team's VPC", async () => {
            const { resources } = await run();
            const groups = ofType(resources, "aws:ec2/securityGroup:SecurityGroup");
            assert.equal(groups.length, 3);
            for (const group of groups) assert.equal(await resolved(group.inputs.vpcId), teamVpc, group.name);
        });

        it("puts the balancer and the proxies' group in the public subnets, the backends in the private ones with no public address", async () => {
            const { resources } = await run();
            assert.deepEqual(await resolved(named(resources, "chat").inputs.subnets), publicSubnets);
            const [group] = ofType(resources, "aws:autoscaling/group:Group");
            assert.deepEqual(await resolved(group.inputs.vpcZoneIdentifiers), publicSubnets);
            // A public address asked for at launch, whatever the subnet assigns by default; the group holds the proxies' security group.
            const [template] = ofType(resources, "aws:ec2/launchTemplate:LaunchTemplate");
            const [nic] = (await resolved(template.inputs.networkInterfaces)) as {
                associatePublicIpAddress: string;
                securityGroups: string[];
            }[];
            assert.equal(nic.associatePublicIpAddress, "true");
            assert.deepEqual(nic.securityGroups, ["chat-proxy-id"]);
            assert.equal(template.inputs.vpcSecurityGroupIds, undefined);
            const backends = instances(resources);
            assert.equal(backends.length, 4);
            const subnets = await Promise.all(backends.map((b) => resolved(b.inputs.subnetId)));
            assert.deepEqual(subnets, [...privateSubnets, ...privateSubnets]);
            for (const backend of backends) assert.equal(backend.inputs.associatePublicIpAddress, false, backend.name);
        });

        it("publishes the name in the team's zone as an alias to the balancer", async () => {
            const { resources, outputs } = await run();
            const [record] = ofType(resources, "aws:route53/record:Record");
            assert.equal(await resolved(record.inputs.zoneId), "Z0TEAMZONE000000001");
            assert.equal(record.inputs.name, "chat.example.com");
            assert.equal(record.inputs.type, "A");
            const [alias] = (await resolved(record.inputs.aliases)) as { name: string; zoneId: string; evaluateTargetHealth: boolean }[];
            assert.equal(alias.name, outputs.loadBalancerDnsName);
            assert.equal(alias.zoneId, "Z2IFOLAFXWLO4F");
            assert.equal(alias.evaluateTargetHealth, true);
            assert.equal(outputs.endpoint, "wss://chat.example.com/");
        });

        it("names its alarms and dashboard after the component too: those names are unique in the account", async () => {
            const { resources } = await run();
            const dashboard = ofType(resources, "aws:cloudwatch/dashboard:Dashboard")[0];
            assert.equal(dashboard.inputs.dashboardName, "wss-edge-dev-chat");
            for (const alarm of ofType(resources, "aws:cloudwatch/metricAlarm:MetricAlarm"))
                assert.match(String(alarm.inputs.name), /^wss-edge-dev-chat-/);
        });

        it("names every resource after the component, so two edges can share a program", async () => {
            const { resources } = await run();
            const own = resources.filter((r) => !r.name.startsWith("team"));
            const strays = own.filter((r) => !r.name.startsWith("chat"));
            assert.deepEqual(
                strays.map((r) => r.name),
                [],
            );
        });

        it("has its resources under the component, at the engine's URNs", async () => {
            const { resources } = await run();
            const urns = [...engineUrns(resources).values()].filter((urn) => !urn.includes("::team"));
            for (const urn of urns) assert.match(urn, /^urn:pulumi:dev::wss-edge::wss-edge:index:WssEdge(\$|::chat$)/);
        });
    });

    describe("placed by stack settings in the team's VPC, one VM", () => {
        const run = once(() => runEdgeProgram({ ...teamPlacement, domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" }));

        it("runs the proxy in the first public subnet, the backends round the private ones, without public addresses", async () => {
            const { resources } = await run();
            const proxy = instances(resources).find((r) => r.name === "edge-proxy") ?? assert.fail("proxy");
            assert.equal(await resolved(proxy.inputs.subnetId), "subnet-0aaa0000000000001");
            assert.equal(
                proxy.inputs.associatePublicIpAddress,
                true,
                "a public address from launch: it boots and is deployed to before the Elastic IP moves",
            );
            const backends = instances(resources).filter((r) => r.name.startsWith("edge-backends"));
            assert.deepEqual(
                await Promise.all(backends.map((b) => resolved(b.inputs.subnetId))),
                JSON.parse(teamPlacement.privateSubnetIds),
            );
            for (const backend of backends) assert.equal(backend.inputs.associatePublicIpAddress, false);
        });

        it("points an A record at the Elastic IP once the address is on a serving VM, taking over one made by hand", async () => {
            const { resources } = await run();
            const record = named(resources, "edge-dns");
            assert.equal(record.inputs.zoneId, "Z0123456789ABCDEFGHIJ");
            assert.deepEqual(await resolved(record.inputs.records), ["198.51.100.7"]);
            assert.equal(record.inputs.ttl, 60);
            assert.equal(record.inputs.allowOverwrite, true);
            const [association] = ofType(resources, "aws:ec2/eipAssociation:EipAssociation");
            assert.ok(record.dependencies.includes(association.urn));
        });

        it("adds no VPC endpoints when the private subnets have their own way out (backendEgress nat)", async () => {
            const { resources } = await run();
            assert.deepEqual(ofType(resources, "aws:ec2/vpcEndpoint:VpcEndpoint"), []);
        });
    });

    it("behind a balancer in a VPC with a secondary range, believes PROXY headers from every range and lets the balancer reach proxies in any", async () => {
        const { resources, outputs } = await runEdgeProgram({ ...teamPlacement, proxyCount: "2" });
        const config = String(outputs.nginxConfig);
        for (const range of ["10.20.0.0/16", "100.64.0.0/16"])
            assert.match(config, new RegExp(`set_real_ip_from ${range.replace(/\./g, "\\.")};`));
        const balancerGroup = named(resources, "edge-load-balancer");
        for (const rule of (await resolved(balancerGroup.inputs.egress)) as { cidrBlocks: string[] }[])
            assert.deepEqual(rule.cidrBlocks, ["10.20.0.0/16", "100.64.0.0/16"]);
    });

    it("refuses two of a balancer's or an endpoint's subnets in one zone, endpoints without private DNS, and a dual-stack edge on a subnet without IPv6", () => {
        const subnet = (id: string, availabilityZone: string, ipv4ToInternet = true) => ({
            id,
            vpcId: "vpc-1",
            availabilityZone,
            ipv4ToInternet,
            ipv6CidrBlock: availabilityZone === "eu-west-1a" ? "2001:db8:1::/64" : "",
            routeTableId: "rtb-1",
            ipv6ToInternet: true,
        });
        const facts = {
            vpc: {
                id: "vpc-1",
                cidrBlock: "10.0.0.0/16",
                cidrBlocks: ["10.0.0.0/16"],
                ipv6CidrBlock: "2001:db8:1::/56",
                enableDnsSupport: true,
                enableDnsHostnames: false,
            },
            publicSubnets: [subnet("subnet-p1", "eu-west-1a"), subnet("subnet-p2", "eu-west-1a"), subnet("subnet-p3", "eu-west-1b")],
            privateSubnets: [
                subnet("subnet-q1", "eu-west-1b", false),
                subnet("subnet-q2", "eu-west-1b", false),
                subnet("subnet-q3", "eu-west-1c", false),
            ],
            otherEndpoints: [
                { id: "vpce-1", service: "ssm", type: "Interface", privateDnsEnabled: true, routeTableIds: [] },
                { id: "vpce-2", service: "ecr.api", type: "Interface", privateDnsEnabled: false, routeTableIds: [] },
                { id: "vpce-3", service: "s3", type: "Gateway", privateDnsEnabled: false, routeTableIds: ["rtb-1", "rtb-9"] },
            ],
        };
        const rules = networkProblems(facts, { publicZones: 2, privateZones: 2, loadBalanced: true, endpoints: true, ipv6: true }).map(
            (p) => `${p.key}: ${p.rule}`,
        );
        assert.deepEqual(rules, [
            "publicSubnetIds: subnet-p3 has no IPv6 range: a dual-stack edge (ipv6) serves IPv6 from every public subnet",
            "publicSubnetIds: subnet-p1 and subnet-p2 are both in eu-west-1a; the balancer takes one subnet per zone",
            "privateSubnetIds: subnet-q1 and subnet-q2 are both in eu-west-1b; an interface endpoint takes one subnet per zone (backendEgress vpc-endpoints)",
            "backendEgress: vpce-1 already serves ssm in vpc-1 (with private DNS): the backends reach it as they are, and AWS would refuse a second; use backendEgress nat",
            "backendEgress: vpce-3 already serves s3 in vpc-1 (route tables rtb-1): the backends reach it as they are, and AWS would refuse a second; use backendEgress nat",
            "vpcId: has DNS hostnames (enableDnsHostnames) off: interface endpoints answer by private DNS, which needs both on (backendEgress vpc-endpoints)",
        ]);
        assert.deepEqual(
            networkProblems(facts, { publicZones: 1, privateZones: 1, loadBalanced: false, endpoints: false, ipv6: false }),
            [],
        );
        assert.equal(offersIpv6(facts), false, "one public subnet has no IPv6 range");
        const noRoute = {
            ...facts,
            publicSubnets: facts.publicSubnets.map((s) => ({
                ...s,
                ipv6CidrBlock: "2001:db8:1::/64",
                ipv6ToInternet: s.id !== "subnet-p2",
            })),
        };
        assert.equal(offersIpv6(noRoute), false, "a public subnet without an IPv6 route to the internet");
        assert.deepEqual(ipv6Gaps(noRoute), ["subnet-p2 has no IPv6 route (::/0) to an internet gateway"]);
    });

    describe("in a VPC whose public subnets have IPv6 ranges: dual-stack", () => {
        const config = {
            ...dualStackPlacement,
            domainName: "ws.example.com",
            hostedZoneId: "Z0123456789ABCDEFGHIJ",
            allowedCidrs: '["0.0.0.0/0","::/0"]',
        };
        const oneVm = once(() => runEdgeProgram(config));
        const balanced = once(() => runEdgeProgram({ ...config, proxyCount: "2" }));

        it("gives the single proxy an IPv6 address, admits ::/0 on 443, and points an AAAA record at it once it serves", async () => {
            const { resources, outputs } = await oneVm();
            const proxy = instances(resources).find((r) => r.name === "edge-proxy") ?? assert.fail("proxy");
            assert.equal(proxy.inputs.ipv6AddressCount, 1);
            const proxyGroup =
                ofType(resources, "aws:ec2/securityGroup:SecurityGroup").find((g) => g.name === "edge-proxy") ?? assert.fail("group");
            const tls = (proxyGroup.inputs.ingress as { fromPort: number; ipv6CidrBlocks: string[] }[]).find((r) => r.fromPort === 443);
            assert.deepEqual(tls?.ipv6CidrBlocks, ["::/0"]);
            const aaaa = named(resources, "edge-dns-ipv6");
            assert.equal(aaaa.inputs.type, "AAAA");
            assert.deepEqual(await resolved(aaaa.inputs.records), ["2001:db8:30:1::a"]);
            const [association] = ofType(resources, "aws:ec2/eipAssociation:EipAssociation");
            assert.ok(aaaa.dependencies.includes(association.urn), "published once the VM serves");
            assert.equal(outputs.proxyPublicIpv6, "2001:db8:30:1::a");
            // The backends stay IPv4: only the public side is dual-stack.
            for (const backend of instances(resources).filter((r) => r.name.startsWith("edge-backends")))
                assert.equal(backend.inputs.ipv6AddressCount, undefined);
        });

        it("makes the balancer dual-stack and adds an AAAA alias to it", async () => {
            const { resources, outputs } = await balanced();
            assert.equal(named(resources, "edge").inputs.ipAddressType, "dualstack");
            const aaaa = named(resources, "edge-dns-ipv6");
            assert.equal(aaaa.inputs.type, "AAAA");
            const [alias] = (await resolved(aaaa.inputs.aliases)) as { name: string }[];
            assert.equal(alias.name, outputs.loadBalancerDnsName);
        });

        it("stays IPv4-only where a public subnet has no IPv6 range, and in the default VPC", async () => {
            const { resources } = await runEdgeProgram({
                ...config,
                publicSubnetIds: '["subnet-0ddd0000000000001","subnet-0ddd0000000000003"]',
            });
            assert.equal(instances(resources).find((r) => r.name === "edge-proxy")?.inputs.ipv6AddressCount, undefined);
            assert.deepEqual(
                ofType(resources, "aws:route53/record:Record").map((r) => r.inputs.type),
                ["A"],
            );
        });

        it("refuses ipv6 on a component outside a VPC of the user's, registering nothing", async () => {
            const registered: RegisteredResource[] = [];
            await assert.rejects(
                () => runEdgeProgram({}, { program: join(__dirname, "adopter", "ipv6WithoutVpc.ts"), registered }),
                /WssEdge lost:ipv6 = true: needs vpcId/,
            );
            assert.deepEqual(registered, []);
        });
    });

    describe("backendEgress vpc-endpoints: backends with no way out but AWS's endpoints", () => {
        const run = once(() => runEdgeProgram({ ...teamPlacement, backendEgress: "vpc-endpoints" }));
        const endpointsOf = (resources: RegisteredResource[]) => ofType(resources, "aws:ec2/vpcEndpoint:VpcEndpoint");

        it("adds Systems Manager's and ECR's interface endpoints in the private subnets with private DNS, admitting the VPC's ranges", async () => {
            const { resources } = await run();
            const endpoints = endpointsOf(resources);
            const interfaces = endpoints.filter((e) => e.inputs.vpcEndpointType === "Interface");
            assert.deepEqual(
                await Promise.all(interfaces.map((e) => resolved(e.inputs.serviceName))),
                interfaceServices.map((service) => `com.amazonaws.eu-west-1.${service}`),
            );
            const endpointGroup = named(resources, "edge-endpoints");
            for (const endpoint of interfaces) {
                assert.deepEqual(await resolved(endpoint.inputs.subnetIds), JSON.parse(teamPlacement.privateSubnetIds));
                assert.equal(endpoint.inputs.privateDnsEnabled, true);
                assert.equal(await resolved(endpoint.inputs.vpcId), teamPlacement.vpcId);
                assert.deepEqual(await resolved(endpoint.inputs.securityGroupIds), [`${endpointGroup.name}-id`]);
            }
            // Private DNS sends the whole VPC here: all its ranges are admitted, or every other instance would lose Systems Manager and ECR.
            const [rule] = (await resolved(endpointGroup.inputs.ingress)) as { fromPort: number; cidrBlocks: string[] }[];
            assert.equal(rule.fromPort, 443);
            assert.deepEqual(rule.cidrBlocks, ["10.20.0.0/16", "100.64.0.0/16"]);
        });

        it("routes S3 (the store, image layers, Amazon Linux's packages) through a gateway in every private subnet's route table", async () => {
            const { resources } = await run();
            const gateway = named(resources, "edge-endpoints-s3");
            assert.equal(gateway.inputs.vpcEndpointType, "Gateway");
            assert.equal(await resolved(gateway.inputs.serviceName), "com.amazonaws.eu-west-1.s3");
            // Two subnets have their own tables; the third uses the VPC's main one.
            assert.deepEqual(await resolved(gateway.inputs.routeTableIds), [
                "rtb-0main-vpc-0a1b2c3d4e5f60001",
                "rtb-0private-a",
                "rtb-0private-b",
            ]);
        });

        it("boots no backend before the endpoints exist", async () => {
            const { resources } = await run();
            const endpoints = endpointsOf(resources);
            const endpointUrns = endpoints.map((e) => e.urn);
            for (const backend of instances(resources).filter((r) => r.name.startsWith("edge-backends")))
                for (const urn of endpointUrns) assert.ok(backend.dependencies.includes(urn), `${backend.name} waits for ${urn}`);
        });
    });
});
