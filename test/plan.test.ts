// One plan, three placements: the AWS program, the local stack and the VM twin run the same edge
// by construction. For any valid settings, the plans of the three placements differ only in the
// placement's fields (plan/edgePlan.ts lists them: the rendered config is a function of the spec
// alone), and every setting of the table does something in every placement.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { backendHealthAgentFile } from "../deploy/deployBundle";
import type { EdgeHostProfile } from "../nginx/edgeConfigFromSettings";
import type { UpstreamServer } from "../nginx/edgeConfigSpec";
import { defaultBackendMachine } from "../plan/capacity";
import {
    awsPlacement,
    type EdgeCertificates,
    type EdgePlan,
    edgePkiPlan,
    localPlacement,
    planEdge,
    releaseOf,
    sharedSpec,
    twinMachine,
    twinPlacement,
} from "../plan/edgePlan";
import { certificateSourceOf, edgeSettingsOf, type RawSettings, validateEdgeSettings, validateSettings } from "../settings/edgeSettings";
import { edgeSettingKeys, settingsTable } from "../settings/settingsTable";
import { runEdgeProgram, teamPlacement } from "./support/pulumiProgram";
import { otherValueOf, fuzzSeed as seed, validSettings } from "./support/settingsArbitraries";

const backends: UpstreamServer[] = [
    { address: "10.213.11.1", port: 17001 },
    { address: "10.213.11.1", port: 17002 },
    { address: "10.213.11.1", port: 17003 },
];
/** A local proxy's host profile, as local/localProxy.ts gives it (its port behind the front: 21443). */
const localHost: EdgeHostProfile = {
    listen: { port: 21443, address: "127.0.0.1", ipv6: false },
    httpRedirectPort: 21080,
    statusListen: { address: "127.0.0.1", port: 21999 },
    workers: { processes: 2, connections: 19800, fileLimit: 20000 },
    paths: {
        pidFile: "/state/edge/run/nginx.pid",
        errorLog: "/state/edge/logs/error.log",
        accessLog: "/state/edge/logs/access.log",
        tempDir: "/state/edge/run/tmp",
    },
};
/** What a PKI gives a release; the same for every placement here, so releases can be compared. */
const certificates: EdgeCertificates = {
    caCertificatePem: "ca",
    edgeCertificateChainPem: "chain",
    edgePrivateKeyPem: "key",
    proxyClientCertificate: { certificatePem: "client", privateKeyPem: "client key" },
};

/** The three placements of one edge: AWS on the machine the twin stands for, the twin, and a local proxy behind its front on 20443. */
function placed(settings: RawSettings): Record<"aws" | "twin" | "local", EdgePlan> {
    const edge = validateEdgeSettings(settings);
    return {
        aws: planEdge(
            edge,
            awsPlacement({
                ...twinMachine,
                backendMemoryMiB: defaultBackendMachine.memoryMiB,
                publicName: "localhost",
                backendAddresses: backends.map((b) => b.address),
                backendPort: 17001,
            }),
        ),
        twin: planEdge(edge, twinPlacement(backends.map((b) => ({ ...b, port: 17001 })))),
        local: planEdge(edge, localPlacement(localHost, 20443, backends)),
    };
}

/** The edge's settings of a stack, as the local stack and the twin take them: they have no certificate of yours (provided), so the stack's CA stands in. */
const edgeOnly = (raw: RawSettings): RawSettings => {
    const edge = Object.fromEntries(Object.entries(raw).filter(([key]) => (edgeSettingKeys as string[]).includes(key)));
    return edge.certificate === "provided" ? { ...edge, certificate: "stack-ca" } : edge;
};

describe("one plan, three placements", () => {
    it("AWS and the VM twin, on the same machine in front of the same backends, get the same config and release byte for byte (200 generated settings)", () => {
        let cases = 0;
        fc.assert(
            fc.property(validSettings, (raw) => {
                cases++;
                const { aws, twin } = placed(edgeOnly(raw));
                assert.equal(twin.nginxConfig, aws.nginxConfig);
                assert.deepEqual(releaseOf(twin, certificates), releaseOf(aws, certificates));
                assert.deepEqual(twin.backendEnvironment, aws.backendEnvironment);
            }),
            { numRuns: 200, seed },
        );
        assert.equal(cases, 200);
    });

    it("the local stack differs from AWS only in the placement's fields (200 generated settings)", () => {
        fc.assert(
            fc.property(validSettings, (raw) => {
                const { aws, local } = placed(edgeOnly(raw));
                assert.deepEqual(sharedSpec(local), sharedSpec(aws));
                const [localFiles, awsFiles] = [releaseOf(local, certificates), releaseOf(aws, certificates)];
                assert.deepEqual(Object.keys(localFiles).sort(), Object.keys(awsFiles).sort(), "the same files");
                for (const file of Object.keys(awsFiles).filter((f) => f !== "nginx.conf"))
                    assert.equal(localFiles[file], awsFiles[file], file);
                assert.equal(local.healthAgent, aws.healthAgent);
                assert.deepEqual(local.backendEnvironment, aws.backendEnvironment);
            }),
            { numRuns: 200, seed },
        );
    });

    it("the twin follows tunnelBufferKiB as AWS does: the same socket ceiling and worker slots", () => {
        const { aws, twin } = placed({ tunnelBufferKiB: "16" });
        assert.match(aws.nginxConfig, /limit_conn edge_sockets 28493;/);
        assert.match(aws.nginxConfig, /worker_connections 58010;/);
        assert.match(twin.nginxConfig, /limit_conn edge_sockets 28493;/);
        assert.match(twin.nginxConfig, /worker_connections 58010;/);
        assert.equal(twin.maxSockets, 28493);
    });

    it("behind the balancer, a proxy admits no more sockets than the balancer carries to one target (55,000), however large its machine", () => {
        const edge = validateEdgeSettings({});
        const onItsOwn = planEdge(
            edge,
            awsPlacement({
                memoryMiB: 16384,
                vcpus: 2,
                backendMemoryMiB: 2048,
                publicName: "ws.example.com",
                backendAddresses: ["10.0.1.21"],
                backendPort: 8443,
            }),
        );
        const behind = planEdge(
            edge,
            awsPlacement({
                memoryMiB: 16384,
                backendMemoryMiB: 2048,
                vcpus: 2,
                publicName: "ws.example.com",
                backendAddresses: ["10.0.1.21"],
                backendPort: 8443,
                balancerRanges: ["172.31.0.0/16"],
            }),
        );
        assert.equal(onItsOwn.maxSockets, 60000, "one proxy behind its Elastic IP: what 16 GiB and one backend's ports hold");
        assert.equal(behind.maxSockets, 55000);
        assert.match(behind.nginxConfig, /limit_conn edge_sockets 55000;/);
        assert.match(behind.nginxConfig, /worker_connections 111024;/);
    });

    it("the twin follows activeHealthChecks as AWS does: off, the release carries no health agent", () => {
        for (const plan of Object.values(placed({ activeHealthChecks: "false" })))
            assert.ok(!(backendHealthAgentFile in releaseOf(plan, certificates)), plan.placement.kind);
        for (const plan of Object.values(placed({})))
            assert.ok(backendHealthAgentFile in releaseOf(plan, certificates), plan.placement.kind);
    });

    it("the local stack renders the HTTP redirect when httpRedirect is on, to the endpoint's own port", () => {
        const { local } = placed({ httpRedirect: "true" });
        assert.match(local.nginxConfig, /listen 127\.0\.0\.1:21080;\n\s+return 301 https:\/\/\$host:20443\$request_uri;/);
        assert.doesNotMatch(placed({}).local.nginxConfig, /return 301/);
    });

    it("behind the local front, a page of the endpoint's own origin may open sockets, not one of the proxy's internal port", () => {
        const { local } = placed({});
        assert.match(local.nginxConfig, /"https:\/\/localhost:20443" 1;/);
        assert.doesNotMatch(local.nginxConfig, /https:\/\/localhost:21443/);
    });
});

/**
 * Everything an adapter takes from the plan and the settings for a placement: the plan itself, the
 * PKI it issues, and the fleet's shape (how many proxies and backends it starts).
 */
function whatIsPlaced(raw: RawSettings, kind: "aws" | "twin" | "local"): string {
    const settings = validateEdgeSettings(raw);
    const plan = placed(raw)[kind];
    return JSON.stringify({
        config: plan.nginxConfig,
        release: releaseOf(plan, certificates),
        environment: plan.backendEnvironment,
        pki: edgePkiPlan(settings, { dnsNames: ["localhost"], ipAddresses: [], certificate: certificateSourceOf(settings) }),
        fleet: { proxies: settings.proxyCount, backends: settings.backendCount },
    });
}

describe("every setting does something", () => {
    it("has another valid value for every edge setting of the table, generated from its kind", () => {
        for (const key of edgeSettingKeys) validateEdgeSettings({ [key]: otherValueOf(key) });
    });

    for (const key of edgeSettingKeys) {
        it(`${key}: changes what AWS, the local stack and the twin run`, () => {
            // Settings that act only together with another get it: the cookie's name and age with cookie affinity.
            const base: RawSettings = key.startsWith("affinityCookie") ? { affinity: "cookie" } : {};
            for (const kind of ["aws", "local", "twin"] as const) {
                assert.notEqual(whatIsPlaced({ ...base, [key]: otherValueOf(key) }, kind), whatIsPlaced(base, kind), `${key} on ${kind}`);
            }
        });
    }

    const awsKeys = (Object.keys(settingsTable) as (keyof typeof settingsTable)[]).filter((key) => settingsTable[key].scope === "aws");
    const runs = new Map<string, Promise<string>>();
    const registered = (config: Record<string, string>) => {
        const key = JSON.stringify(config);
        if (!runs.has(key))
            runs.set(
                key,
                runEdgeProgram(config).then((run) => JSON.stringify(run.resources.map((r) => [r.type, r.name, r.inputs]))),
            );
        return runs.get(key) as Promise<string>;
    };
    const withName: Record<string, string> = { domainName: "ws.example.com" };
    const inTeamNetwork = { ...withName, ...teamPlacement };
    const withZone = { ...withName, hostedZoneId: "Z0123456789ABCDEFGHIJ" };
    /** Settings that act only with others: each compared in a stack that has them. */
    const together: Partial<Record<string, [Record<string, string>, Record<string, string>]>> = {
        // A certificate comes with its key and the name it is for.
        tlsCertificate: [
            withName,
            { ...withName, tlsCertificate: otherValueOf("tlsCertificate"), tlsPrivateKey: otherValueOf("tlsPrivateKey") },
        ],
        tlsPrivateKey: [
            withName,
            { ...withName, tlsCertificate: otherValueOf("tlsCertificate"), tlsPrivateKey: otherValueOf("tlsPrivateKey") },
        ],
        // A VPC comes with its subnets, which EC2 must know: the team network of the mocks.
        vpcId: [withName, inTeamNetwork],
        publicSubnetIds: [inTeamNetwork, { ...inTeamNetwork, publicSubnetIds: '["subnet-0aaa0000000000002","subnet-0aaa0000000000001"]' }],
        privateSubnetIds: [
            inTeamNetwork,
            { ...inTeamNetwork, privateSubnetIds: '["subnet-0bbb0000000000001","subnet-0bbb0000000000002"]' },
        ],
        backendEgress: [inTeamNetwork, { ...inTeamNetwork, backendEgress: otherValueOf("backendEgress") }],
        // An ACME directory is used with certificate acme, which needs the zone.
        acmeDirectory: [withZone, { ...withZone, acmeDirectory: otherValueOf("acmeDirectory") }],
    };
    for (const key of awsKeys) {
        it(`${key}: changes what the AWS program registers`, async () => {
            const [base, changed] = together[key] ?? [withName, { ...withName, [key]: otherValueOf(key) }];
            assert.notEqual(await registered(changed), await registered(base), key);
        });
    }

    it("takes the AWS placement's settings from the stack only (edge settings are the table's edge scope)", () => {
        const aws = Object.keys(settingsTable).filter((key) => !(edgeSettingKeys as string[]).includes(key));
        for (const key of aws) assert.equal(settingsTable[key as keyof typeof settingsTable].scope, "aws", key);
        const stack = validateSettings({});
        assert.deepEqual(Object.keys(edgeSettingsOf(stack)).sort(), [...edgeSettingKeys].sort());
    });
});
