// The CrossGuard guardrails, run without the Pulumi CLI: each policy against resources that break
// it and resources that keep it, and all of them against the stack this repository registers.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
    backendsWithoutPublicIngress,
    edgePolicies,
    imdsV2Required,
    noPrivateKeysInOutputs,
    noSsh,
    rootVolumesEncrypted,
    worldIngressOnlyOnWebPorts,
} from "../policy/edgePolicies";
import { resourceArgs, type StackResource, stackArgs, violationsOf } from "./support/policyArgs";
import { runEdgeProgram } from "./support/pulumiProgram";

const sg = "aws:ec2/securityGroup:SecurityGroup";
const tcp = (port: number, cidrBlocks: string[] = [], ipv6CidrBlocks: string[] = []) => ({
    protocol: "tcp",
    fromPort: port,
    toPort: port,
    cidrBlocks,
    ipv6CidrBlocks,
});
const goodInstance = { metadataOptions: { httpTokens: "required" }, rootBlockDevice: { encrypted: true } };

describe("guardrail: only 443 open to the world", () => {
    it("allows 443 from everywhere", async () => {
        assert.deepEqual(
            await violationsOf(worldIngressOnlyOnWebPorts, resourceArgs(sg, { ingress: [tcp(443, ["0.0.0.0/0"], ["::/0"])] })),
            [],
        );
    });
    it("flags another port open to IPv4 or IPv6 world, in groups and standalone rules", async () => {
        assert.match(
            (await violationsOf(worldIngressOnlyOnWebPorts, resourceArgs(sg, { ingress: [tcp(8443, ["0.0.0.0/0"])] })))[0],
            /port 8443 is open to the whole internet/,
        );
        assert.match(
            (
                await violationsOf(
                    worldIngressOnlyOnWebPorts,
                    resourceArgs(sg, { ingress: [{ protocol: "-1", fromPort: 0, toPort: 0, ipv6CidrBlocks: ["::/0"] }] }),
                )
            )[0],
            /all ports/,
        );
        assert.equal(
            (
                await violationsOf(
                    worldIngressOnlyOnWebPorts,
                    resourceArgs("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {
                        ipProtocol: "tcp",
                        fromPort: 3000,
                        toPort: 3000,
                        cidrIpv4: "0.0.0.0/0",
                    }),
                )
            ).length,
            1,
        );
        assert.equal(
            (
                await violationsOf(
                    worldIngressOnlyOnWebPorts,
                    resourceArgs("aws:ec2/securityGroupRule:SecurityGroupRule", { type: "ingress", ...tcp(5432, ["0.0.0.0/0"]) }),
                )
            ).length,
            1,
        );
    });
    it("flags 80 unless the pack's config allows the HTTPS redirect", async () => {
        const args = (allow: boolean) => resourceArgs(sg, { ingress: [tcp(80, ["0.0.0.0/0"])] }, { allowHttpRedirect: allow });
        assert.equal((await violationsOf(worldIngressOnlyOnWebPorts, args(false))).length, 1);
        assert.deepEqual(await violationsOf(worldIngressOnlyOnWebPorts, args(true)), []);
    });
    it("flags a range of ports that includes 443", async () => {
        assert.equal(
            (
                await violationsOf(
                    worldIngressOnlyOnWebPorts,
                    resourceArgs(sg, { ingress: [{ protocol: "tcp", fromPort: 400, toPort: 500, cidrBlocks: ["0.0.0.0/0"] }] }),
                )
            ).length,
            1,
        );
    });
});

describe("guardrail: no SSH at all", () => {
    it("flags 22 from any range or group, also inside a port range or an all-traffic rule", async () => {
        assert.match(
            (await violationsOf(noSsh, resourceArgs(sg, { ingress: [tcp(22, [], ["::/0"])] })))[0],
            /admits SSH \(22\).*Session Manager/,
        );
        assert.equal(
            (await violationsOf(noSsh, resourceArgs(sg, { ingress: [tcp(22, ["203.0.113.0/24"])] }))).length,
            1,
            "an admin range too",
        );
        assert.equal(
            (
                await violationsOf(
                    noSsh,
                    resourceArgs(sg, { ingress: [{ protocol: "tcp", fromPort: 22, toPort: 22, securityGroups: ["sg-1"] }] }),
                )
            ).length,
            1,
            "another security group too",
        );
        assert.equal(
            (
                await violationsOf(
                    noSsh,
                    resourceArgs(sg, { ingress: [{ protocol: "tcp", fromPort: 1, toPort: 1024, cidrBlocks: ["10.0.0.0/8"] }] }),
                )
            ).length,
            1,
        );
        assert.equal(
            (await violationsOf(noSsh, resourceArgs(sg, { ingress: [{ protocol: "-1", fromPort: 0, toPort: 0, self: true }] }))).length,
            1,
        );
    });
    it("allows the edge's own ports", async () => {
        assert.deepEqual(await violationsOf(noSsh, resourceArgs(sg, { ingress: [tcp(443, ["0.0.0.0/0"]), tcp(9113)] })), []);
    });
});

describe("guardrails on instances", () => {
    const instance = "aws:ec2/instance:Instance";
    it("require IMDSv2", async () => {
        assert.match(
            (
                await violationsOf(imdsV2Required, resourceArgs(instance, { ...goodInstance, metadataOptions: { httpTokens: "optional" } }))
            )[0],
            /IMDSv2/,
        );
        assert.equal((await violationsOf(imdsV2Required, resourceArgs(instance, {}))).length, 1);
        assert.deepEqual(await violationsOf(imdsV2Required, resourceArgs(instance, goodInstance)), []);
        const template = "aws:ec2/launchTemplate:LaunchTemplate";
        assert.match(
            (await violationsOf(imdsV2Required, resourceArgs(template, { metadataOptions: { httpTokens: "optional" } })))[0],
            /IMDSv2/,
        );
        assert.deepEqual(await violationsOf(imdsV2Required, resourceArgs(template, { metadataOptions: { httpTokens: "required" } })), []);
    });
    it("require an encrypted root volume", async () => {
        assert.match(
            (
                await violationsOf(rootVolumesEncrypted, resourceArgs(instance, { ...goodInstance, rootBlockDevice: { encrypted: false } }))
            )[0],
            /root volume must be encrypted/,
        );
        assert.deepEqual(await violationsOf(rootVolumesEncrypted, resourceArgs(instance, goodInstance)), []);
    });
});

describe("guardrail: backends without public ingress", () => {
    const backend = (group: StackResource): StackResource => ({
        type: "aws:ec2/instance:Instance",
        name: "backend-1",
        props: { ...goodInstance, tags: { Role: "wss-edge-backend" } },
        propertyDependencies: { vpcSecurityGroupIds: [group] },
    });
    it("flags a backend whose security group admits an address range", async () => {
        const open: StackResource = { type: sg, name: "backend-sg", props: { ingress: [tcp(8443, ["10.0.0.0/8"])] } };
        assert.match(
            (await violationsOf(backendsWithoutPublicIngress, stackArgs([open, backend(open)])))[0],
            /backend-1 is reachable from address ranges through backend-sg/,
        );
    });
    it("allows a backend reachable only from the proxy's security group", async () => {
        const closed: StackResource = {
            type: sg,
            name: "backend-sg",
            props: { ingress: [{ protocol: "tcp", fromPort: 8443, toPort: 8443, securityGroups: ["sg-proxy"] }] },
        };
        assert.deepEqual(await violationsOf(backendsWithoutPublicIngress, stackArgs([closed, backend(closed)])), []);
    });
});

describe("guardrail: no private keys in outputs", () => {
    it("flags an output holding a PEM private key, and passes certificates", async () => {
        const stack = (outputs: Record<string, unknown>): StackResource[] => [
            { type: "pulumi:pulumi:Stack", name: "wss-edge-dev", props: outputs },
        ];
        assert.match(
            (
                await violationsOf(
                    noPrivateKeysInOutputs,
                    stackArgs(stack({ edgeKey: "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n" })),
                )
            )[0],
            /"edgeKey" contains a private key/,
        );
        assert.deepEqual(
            await violationsOf(
                noPrivateKeysInOutputs,
                stackArgs(stack({ caCertificatePem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n" })),
            ),
            [],
        );
    });
});

describe("this repository's stack", () => {
    const shapes: [string, Record<string, string>][] = [
        ...[1, 2, 3].map((n): [string, Record<string, string>] => [`${n} prox${n === 1 ? "y" : "ies"}`, { proxyCount: String(n) }]),
        ["certificate acme (a name and a zone)", { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" }],
    ];
    for (const [shape, config] of shapes)
        it(`passes every guardrail, as registered under mocks (with the redirect on), with ${shape}`, async () => {
            const { resources, outputs } = await runEdgeProgram({ httpRedirect: "true", ...config });
            // The mocks give every resource the id "<name>-id"; link instances to their groups by it.
            const groups = new Map(
                resources.filter((r) => r.type === sg).map((r) => [`${r.name}-id`, { type: r.type, name: r.name, props: r.inputs }]),
            );
            const stackResources: StackResource[] = [
                ...resources.map((r) => ({
                    type: r.type,
                    name: r.name,
                    props: r.inputs,
                    propertyDependencies: {
                        vpcSecurityGroupIds: (r.inputs.vpcSecurityGroupIds ?? []).map((id: string) => groups.get(id)).filter(Boolean),
                    },
                })),
                { type: "pulumi:pulumi:Stack", name: "wss-edge-dev", props: outputs },
            ];
            const backendLinks = stackResources
                .filter((r) => r.props.tags?.Role === "wss-edge-backend")
                .map((r) => r.propertyDependencies!.vpcSecurityGroupIds.length);
            assert.deepEqual(backendLinks, [1, 1, 1], "each backend is linked to its security group");
            for (const policy of edgePolicies) {
                const found =
                    "validateResource" in policy && policy.validateResource
                        ? (
                              await Promise.all(
                                  resources.map((r) => violationsOf(policy, resourceArgs(r.type, r.inputs, { allowHttpRedirect: true }))),
                              )
                          ).flat()
                        : await violationsOf(policy, stackArgs(stackResources));
                assert.deepEqual(found, [], policy.name);
            }
        });
});

describe("the pull-request policy config", () => {
    it("configures only policies and properties the pack declares", () => {
        const config = JSON.parse(readFileSync(join(__dirname, "..", "policy", "dev-config.json"), "utf8")) as Record<
            string,
            Record<string, unknown>
        >;
        for (const [name, values] of Object.entries(config)) {
            const policy = edgePolicies.find((p) => p.name === name);
            assert.ok(policy, `no policy named ${name}`);
            for (const key of Object.keys(values)) assert.ok(policy.configSchema?.properties?.[key], `${name} declares no ${key}`);
        }
    });
});
