// Day two on AWS: for each change a user makes after the first `pulumi up`, in both shapes (one
// VM; a balancer in front of an Auto Scaling group), what the next `up` replaces, updates or
// leaves alone — the program run before and after under mocks, the providers' replace rules
// applied (test/support/changePlan.ts) — and, on the engine's order of those steps
// (test/support/engineOrder.ts), the availability invariants (test/support/availability.ts). The
// change matrix in docs/aws.md says the same in words, row by row.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { cpuArchitecture } from "../components/instanceDefaults";
import { sha256 } from "../deploy/deployBundle";
import { SettingsError } from "../settings/edgeSettings";
import { assertAvailability } from "./support/availability";
import { type Change, changeBetween, type Plan, type ProgramState, resourceKey } from "./support/changePlan";
import {
    bundleFiles,
    dualStackPlacement,
    type MockNetwork,
    named,
    type RegisteredResource,
    resolveOutput,
    runEdgeProgram,
    teamNetwork,
    teamPlacement,
} from "./support/pulumiProgram";

const dev = {};
const shapes = { "one VM": {}, "load-balanced": { proxyCount: "2" } } as const;
type Shape = keyof typeof shapes;

/** Everything the plan touches, as `action name` lines, sorted. */
function touched(plan: Plan): string[] {
    return [...plan.entries()]
        .filter(([, action]) => action !== "same")
        .map(([key, action]) => `${action} ${key.split("::")[1]}`)
        .sort();
}

const instance = (name: string) => resourceKey("aws:ec2/instance:Instance", name);
const certificate = (name: string) => resourceKey("tls:index/locallySignedCert:LocallySignedCert", name);
const builtImage = resourceKey("docker:index/image:Image", "edge-backends-app");

const edgeRelease = ["replace edge-deploy", "replace edge-deploy-release"];
/** certificate acme: its account key, the order, ACM's copy, and the renewal alarm. */
const acmeCreated = ["create edge-acme-account", "create edge-acme-copy", "create edge-acme-order", "create edge-certificate-renewal"];
/** The stack CA's edge certificate: its key, request and certificate. */
const stackCaEdgeCreated = ["create edge-edge", "create edge-edge", "create edge-edge"];
const stackCaEdgeDeleted = stackCaEdgeCreated.map((step) => step.replace("create", "delete"));
/** A backend told the fleet again (after the proxies' rollout). */
const fleetNotice = (n: number) => `replace edge-backend-fleet-backend-${n}`;
const backendRelease = (n: number) => [
    `replace edge-backends-backend-${n}-deploy`,
    `replace edge-backends-backend-${n}-health`,
    `replace edge-backends-backend-${n}-release`,
];
const backendParts = (n: number) => [
    `edge-backends-backend-${n}`,
    `edge-backends-backend-${n}`,
    `edge-backends-backend-${n}`,
    `edge-backends-backend-${n}`,
    `edge-backends-backend-${n}-deploy`,
    `edge-backends-backend-${n}-health`,
    `edge-backends-backend-${n}-release`,
    `edge-backends-backend-${n}-ssm`,
    `edge-backend-${n}`,
    `edge-backend-${n}`,
    `edge-backend-${n}`,
    `edge-backend-${n}-instance-check`,
    `edge-backend-${n}-system-check`,
];
const singleProxyReplaced = [
    // The VM's replacement, and the address association that follows it once the deploy checked it.
    "replace edge-proxy",
    "replace edge-proxy",
    "replace edge-deploy",
    // The gates run on the proxy: checked again from the new one.
    "replace edge-backends-backend-1-health",
    "replace edge-backends-backend-2-health",
    "replace edge-backends-backend-3-health",
    // The alarms and the dashboard follow the new instance ID.
    "update edge-dashboard",
    "update edge-proxy-instance-check",
    "update edge-proxy-system-check",
];

/**
 * The proxies onto new machines (a new type or platform): one VM replaced by the path that moves
 * the address after the deploy; the group's new template rolled in by an instance refresh that
 * `up` waits for; a new release sized for the new machines, and the socket alarms following it.
 */
const proxiesOnNewMachines = {
    "one VM": [...singleProxyReplaced, "replace edge-deploy-release", "update edge-proxy-sockets"].sort(),
    "load-balanced": [
        ...edgeRelease,
        "replace edge-proxies-refresh",
        "update edge-dashboard",
        "update edge-fleet-sockets",
        "update edge-proxies",
        "update edge-proxies",
        "update edge-proxy-sockets",
    ].sort(),
};

const dualStackConfig = { ...dualStackPlacement, domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" };
/** The same network before it had any IPv6 range. */
const withoutIpv6 = (network: MockNetwork): MockNetwork => ({
    vpcs: network.vpcs.map((vpc) => ({ ...vpc, ipv6CidrBlock: undefined })),
    subnets: network.subnets.map((subnet) => ({ ...subnet, ipv6CidrBlock: undefined })),
});

const threePublicSubnets = '["subnet-0aaa0000000000001","subnet-0aaa0000000000002","subnet-0aaa0000000000003"]';

/** What `up` touches when it is the same in both shapes. */
const inBothShapes = (touches: readonly string[]): Record<Shape, readonly string[]> => ({ "one VM": touches, "load-balanced": touches });

interface Row {
    /** The row of docs/aws.md's change matrix this checks: its first cell, as written there. */
    readonly matrix: string;
    readonly change: string;
    /** The one shape the change exists in (the other's cell in the docs is "—"). */
    readonly only?: Shape;
    /** More the row's docs cell says, checked on the change. */
    readonly check?: (change: Change, shape: Shape) => void;
    /** A migration, not a day-two change: in that shape an invariant breaks, as the docs warn. */
    readonly breaks?: Partial<Record<Shape, RegExp>>;
    readonly before?: ProgramState["config"];
    readonly after?: ProgramState["config"];
    readonly replaced?: readonly string[];
    readonly lost?: readonly string[];
    readonly skipRefresh?: boolean;
    readonly options?: ProgramState["options"];
    /** How the cloud was before the change, when the change is the cloud's (a network that gained IPv6). */
    readonly beforeOptions?: ProgramState["options"];
    /** What `up` touches, in each shape. */
    readonly touches: Partial<Record<Shape, readonly string[]>>;
}

const rows: Row[] = [
    { matrix: "Nothing", change: "nothing changed", touches: { "one VM": [], "load-balanced": [] } },
    {
        matrix: "An edge setting (`connectionsPerAddress`, `tlsPolicy`, `tunnelBufferKiB`, `activeHealthChecks`, `allowedOrigins`, …)",

        change: "an edge setting (connectionsPerAddress): a new edge release, rolled over the proxies, a reload",
        after: { connectionsPerAddress: "500" },
        touches: inBothShapes(edgeRelease),
    },
    {
        matrix: "`affinity`",

        change: "affinity and allowedOrigins: a new edge release; then each backend is told the fleet's new hashing (it moves the sockets whose key now hashes elsewhere)",
        after: { affinity: "cookie", allowedOrigins: '["https://app.example.com"]' },
        touches: inBothShapes([...edgeRelease, ...[1, 2, 3].map(fleetNotice)].sort()),
    },
    {
        matrix: "An edge setting (`connectionsPerAddress`, `tlsPolicy`, `tunnelBufferKiB`, `activeHealthChecks`, `allowedOrigins`, …)",

        change: "activeHealthChecks off: a new edge release without the agent",
        after: { activeHealthChecks: "false" },
        touches: inBothShapes(edgeRelease),
    },
    {
        matrix: "`idleTimeoutSeconds`",

        change: "idleTimeoutSeconds: the proxies reload, and the backends restart one by one for their new ping interval",
        after: { idleTimeoutSeconds: "60" },
        touches: inBothShapes([...edgeRelease, ...[1, 2, 3].flatMap(backendRelease)].sort()),
    },
    {
        matrix: "`backendBufferKiB`",

        change: "backendBufferKiB: each backend's release in turn, its container restarted with the new bound; the proxies untouched",
        after: { backendBufferKiB: "1024" },
        touches: inBothShapes([1, 2, 3].flatMap(backendRelease)),
    },
    {
        matrix: "`backendCount` 3 → 4",

        change: "backendCount 3 → 4: a new backend with its own role, certificate, release and gate; the proxies reload; then every backend is told the fleet (the sockets whose key now hashes to the fourth move there)",
        after: { backendCount: "4" },
        touches: inBothShapes(
            [
                ...backendParts(4).map((p) => `create ${p}`),
                "create edge-backend-fleet-backend-4",
                ...[1, 2, 3].map(fleetNotice),
                ...edgeRelease,
                "update edge-dashboard",
            ].sort(),
        ),
    },
    {
        matrix: "`backendCount` 4 → 3",

        change: "backendCount 4 → 3: the proxies stop sending the fourth new clients, the others are told the fleet, then it goes",
        before: { backendCount: "4" },
        touches: inBothShapes(
            [
                ...backendParts(4).map((p) => `delete ${p}`),
                "delete edge-backend-fleet-backend-4",
                ...[1, 2, 3].map(fleetNotice),
                ...edgeRelease,
                "update edge-dashboard",
            ].sort(),
        ),
    },
    {
        matrix: "A new image (`backendImage`, or `backend/` rebuilt)",

        change: "a new image of the user's own: each backend's release, deployed and gated in turn",
        before: { backendImage: "ghcr.io/acme/ws-app:1.4" },
        after: { backendImage: "ghcr.io/acme/ws-app:1.5" },
        touches: inBothShapes([1, 2, 3].flatMap(backendRelease)),
    },
    {
        matrix: "A new image (`backendImage`, or `backend/` rebuilt)",

        change: "a rebuilt backend/ image (new digest): the same rolling deploy",
        replaced: [builtImage],
        touches: inBothShapes(["replace edge-backends-app", ...[1, 2, 3].flatMap(backendRelease)]),
    },
    {
        matrix: "A new Debian or Amazon Linux AMI",

        change: "a new Debian or Amazon Linux AMI: instances keep theirs; the proxies' group rolls onto it, launching before terminating",
        options: { amiRelease: "2026.12" },
        // The template's new version starts an instance refresh, which `up` waits for.
        touches: { "one VM": [], "load-balanced": ["replace edge-proxies-refresh", "update edge-proxies", "update edge-proxies"] },
    },
    {
        matrix: "A backend certificate renewed",

        change: "a renewed backend certificate: only that backend's release (a TLS reload in the app) and gate",
        replaced: [certificate("edge-backend-2")],
        touches: inBothShapes([...backendRelease(2), "replace edge-backend-2"].sort()),
    },
    {
        matrix: "The edge or proxy client certificate renewed, or your own set",

        change: "a renewed edge certificate: a new edge release, a reload",
        replaced: [certificate("edge-edge")],
        touches: inBothShapes([...edgeRelease, "replace edge-edge"]),
    },
    {
        matrix: "The edge or proxy client certificate renewed, or your own set",

        change: "a renewed proxy client certificate: a new edge release, and the gates' credentials in the store",
        replaced: [certificate("edge-proxy-client")],
        touches: inBothShapes([...edgeRelease, "replace edge-proxy-client", "update edge-gate-credentials"]),
    },
    {
        matrix: "The edge or proxy client certificate renewed, or your own set",

        change: "a user-supplied certificate instead of the stack's: the issued one goes, a new edge release",
        before: { domainName: "ws.example.com" },
        after: {
            domainName: "ws.example.com",
            tlsCertificate: "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n",
            tlsPrivateKey: "-----BEGIN PRIVATE KEY-----\nTUlJQg==\n-----END PRIVATE KEY-----\n",
        },
        touches: inBothShapes(["delete edge-edge", "delete edge-edge", "delete edge-edge", ...edgeRelease]),
    },
    {
        matrix: "A lost proxy VM",

        change: "a lost proxy VM: the next up's refresh drops it from the state; one VM is created anew and serves before the address moves; the group replaces its own",
        lost: [instance("edge-proxy")],
        touches: {
            "one VM": [
                ...singleProxyReplaced.filter((step) => step !== "replace edge-proxy"),
                "create edge-proxy",
                "replace edge-proxy",
            ].sort(),
            "load-balanced": [],
        },
    },
    {
        matrix: "A lost proxy VM",

        change: "a lost proxy VM, `pulumi up --refresh=false`: the state still holds it, so nothing is noticed",
        lost: [instance("edge-proxy")],
        skipRefresh: true,
        touches: inBothShapes([]),
    },
    {
        matrix: "A lost backend",

        change: "a lost backend: the next up's refresh drops it from the state; created anew, it applies its current release at first boot, is deployed and gated; the proxies reload for its address",
        lost: [instance("edge-backends-backend-2")],
        touches: inBothShapes(
            [
                "create edge-backends-backend-2",
                "replace edge-backends-backend-2-deploy",
                "replace edge-backends-backend-2-health",
                ...edgeRelease,
                // Its new address is in every backend's fleet.
                ...[1, 2, 3].map(fleetNotice),
                "update edge-backend-2-instance-check",
                "update edge-backend-2-system-check",
                "update edge-dashboard",
            ].sort(),
        ),
    },
    {
        matrix: "`backendInstanceType`",

        change: "backendInstanceType: each backend stopped and started in place, then given its new socket cap (a release), the next only once the one before passed its gate; the backends' socket alarm and the dashboard follow the new cap",
        after: { backendInstanceType: "t3.medium" },
        touches: inBothShapes(
            [
                ...[1, 2, 3].flatMap((n) => [...backendRelease(n), `update (stop and start) edge-backends-backend-${n}`]),
                "update edge-backend-sockets",
                "update edge-dashboard",
            ].sort(),
        ),
    },
    {
        matrix: "`proxyInstanceType`",

        change: "proxyInstanceType: one VM is replaced by one of the new type, which serves before the address moves; the group rolls onto the new type; the socket alarms and the dashboard follow the new ceiling",
        after: { proxyInstanceType: "c6i.xlarge" },
        touches: proxiesOnNewMachines,
    },
    {
        matrix: "A new default subnet (a zone added to the region)",

        change: "a new default subnet (a zone added to the region): no VM moves; the group may use the new zone too",
        options: { subnetIds: ["subnet-c", "subnet-a", "subnet-b", "subnet-0"] },
        // A Network Load Balancer takes a new subnet in place (changePlan.ts, from the provider's customizeDiffLoadBalancerNLB).
        touches: { "one VM": [], "load-balanced": ["update edge", "update edge-proxies"] },
    },
    {
        matrix: "`hostedZoneId` (with `domainName`)",

        change: "hostedZoneId (with domainName): the record is created, once the edge serves; certificate auto becomes acme, so the CA's certificate replaces the stack CA's in a new edge release",
        before: { domainName: "ws.example.com" },
        after: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        touches: inBothShapes([...acmeCreated, "create edge-dns", ...stackCaEdgeDeleted, ...edgeRelease].sort()),
    },
    {
        matrix: "`hostedZoneId` with `certificate` `stack-ca`",

        change: "hostedZoneId with certificate stack-ca: only the record is created, once the edge serves",
        before: { domainName: "ws.example.com", certificate: "stack-ca" },
        after: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ", certificate: "stack-ca" },
        touches: inBothShapes(["create edge-dns"]),
    },
    {
        matrix: "`certificate` `acme` → `stack-ca` (or back)",

        change: "certificate acme → stack-ca: the stack's CA signs an edge certificate, a new edge release; the ACME order, its account and ACM's copy go",
        before: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        after: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ", certificate: "stack-ca" },
        touches: inBothShapes(
            [...acmeCreated.map((step) => step.replace("create", "delete")), ...stackCaEdgeCreated, ...edgeRelease].sort(),
        ),
    },
    {
        matrix: "The ACME certificate renewed (the first `up` after its renewal time)",

        change: "the ACME certificate renewed (the first up after its renewal time): a new edge release, a reload; ACM's copy is imported again under the same ARN",
        before: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        after: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        replaced: [resourceKey("pulumi-nodejs:dynamic/wss-edge:AcmeOrder", "edge-acme-order")],
        touches: inBothShapes(["replace edge-acme-order", "update edge-acme-copy", ...edgeRelease].sort()),
    },
    {
        matrix: "`hostedZoneId` removed, `certificate` `auto`",

        change: "hostedZoneId removed, certificate auto: the record is deleted, and the edge goes back to the stack CA's certificate (pulumi up warns that browsers will not trust it; with certificate acme set, the change is refused instead)",
        before: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        after: { domainName: "ws.example.com" },
        touches: inBothShapes(
            [
                ...acmeCreated.map((step) => step.replace("create", "delete")),
                "delete edge-dns",
                ...stackCaEdgeCreated,
                ...edgeRelease,
            ].sort(),
        ),
    },
    {
        matrix: "`domainName`, with `certificate` `acme`",

        change: "domainName, with certificate acme: a new order for the new name, a new edge release; the record moves (the old name's is deleted, the new one's created once the edge serves)",
        before: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        after: { domainName: "chat.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        touches: inBothShapes(["replace edge-acme-order", "replace edge-dns", "update edge-acme-copy", ...edgeRelease].sort()),
    },
    {
        matrix: "`certificate` `acme` → `provided`",

        change: "certificate acme → provided: your certificate in a new edge release; the ACME order, its account key, ACM's copy and the alarm go",
        before: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        after: {
            domainName: "ws.example.com",
            hostedZoneId: "Z0123456789ABCDEFGHIJ",
            tlsCertificate: "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n",
            tlsPrivateKey: "-----BEGIN PRIVATE KEY-----\nTUlJQg==\n-----END PRIVATE KEY-----\n",
        },
        touches: inBothShapes([...acmeCreated.map((step) => step.replace("create", "delete")), ...edgeRelease].sort()),
    },
    {
        matrix: "`acmeDirectory`",

        change: "acmeDirectory: a new order from the other CA, a new edge release, a reload",
        before: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ" },
        after: {
            domainName: "ws.example.com",
            hostedZoneId: "Z0123456789ABCDEFGHIJ",
            acmeDirectory: "https://acme-staging-v02.api.letsencrypt.org/directory",
        },
        touches: inBothShapes(["replace edge-acme-order", "update edge-acme-copy", ...edgeRelease].sort()),
    },
    {
        matrix: "`publicSubnetIds`, one added",

        change: "publicSubnetIds, one added: no VM moves; the balancer takes the subnet in place and the group may launch there",
        before: teamPlacement,
        after: { ...teamPlacement, publicSubnetIds: threePublicSubnets },
        touches: { "one VM": [], "load-balanced": ["update edge", "update edge-proxies"] },
    },
    {
        matrix: "`privateSubnetIds`",

        change: "privateSubnetIds: no backend moves (each keeps the subnet it was made in); a new or replaced one takes its turn's",
        before: teamPlacement,
        after: { ...teamPlacement, privateSubnetIds: '["subnet-0bbb0000000000001","subnet-0bbb0000000000002"]' },
        touches: inBothShapes([]),
    },
    {
        matrix: "`backendEgress` `nat` → `vpc-endpoints`",

        change: "backendEgress nat → vpc-endpoints: the endpoints are created; no backend restarts",
        before: teamPlacement,
        after: { ...teamPlacement, backendEgress: "vpc-endpoints" },
        touches: inBothShapes(
            ["", "-ec2messages", "-ecr-api", "-ecr-dkr", "-monitoring", "-s3", "-ssm", "-ssmmessages"].map(
                (suffix) => `create edge-endpoints${suffix}`,
            ),
        ),
    },
    {
        matrix: "IPv6 ranges (and a `::/0` route to the internet gateway) given to your VPC and its public subnets",

        change: "IPv6 ranges and routes given to your VPC and its public subnets: the next up makes the edge dual-stack (one VM is replaced by one with an IPv6 address, which serves before the address moves; the balancer's address type changes in place) and adds the AAAA record once it serves",
        before: dualStackConfig,
        after: dualStackConfig,
        beforeOptions: { network: withoutIpv6(teamNetwork) },
        touches: {
            "one VM": [...singleProxyReplaced, "create edge-dns-ipv6"].sort(),
            "load-balanced": ["create edge-dns-ipv6", "update edge"],
        },
    },
    {
        matrix: "`alarmEmail`",

        change: "alarmEmail: only the topic's email subscription is created",
        after: { alarmEmail: "ops@example.com" },
        touches: inBothShapes(["create edge-alarms-email"]),
    },
    {
        matrix: "`proxyPlatform` `debian-12` → `debian-13` (or back)",
        change: "proxyPlatform debian-12 → debian-13: one VM is replaced by a Debian 13 VM (its first boot checks the image), which serves before the address moves; the group rolls onto Debian 13's image; the release offers the hybrid group and admits what the new per-socket cost allows",
        after: { proxyPlatform: "debian-13" },
        touches: proxiesOnNewMachines,
    },
    {
        matrix: "`proxyPlatform` `debian-12` → `debian-13` (or back)",
        change: "proxyPlatform debian-13 → debian-12: the same path back (the VM replaced, the group rolled, a new release with X25519 first and the higher ceiling)",
        before: { proxyPlatform: "debian-13" },
        after: { proxyPlatform: "debian-12" },
        touches: proxiesOnNewMachines,
    },
    {
        matrix: "`backendMaxSockets`, `closeSpreadSeconds`, `rebalanceSeconds`",
        change: "backendMaxSockets, closeSpreadSeconds and rebalanceSeconds: each backend's release in turn, its app restarted with the new values",
        after: { backendMaxSockets: "10000", closeSpreadSeconds: "20", rebalanceSeconds: "30" },
        touches: inBothShapes([...[1, 2, 3].flatMap(backendRelease), "update edge-backend-sockets", "update edge-dashboard"].sort()),
    },
    {
        matrix: "`certificate` `acme` → `stack-ca` (or back)",
        change: "certificate stack-ca → acme: the CA's certificate is ordered, a new edge release; the stack CA's edge certificate goes",
        before: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ", certificate: "stack-ca" },
        after: { domainName: "ws.example.com", hostedZoneId: "Z0123456789ABCDEFGHIJ", certificate: "acme" },
        touches: inBothShapes([...acmeCreated, ...stackCaEdgeDeleted, ...edgeRelease].sort()),
    },
    {
        matrix: "`publicSubnetIds`, one removed",
        change: "publicSubnetIds, one removed: the VM keeps its subnet; the balancer cannot drop a subnet in place and is replaced under a new name (a migration)",
        before: { ...teamPlacement, publicSubnetIds: threePublicSubnets },
        after: teamPlacement,
        breaks: { "load-balanced": /LoadBalancer::edge would be replace: the edge would stop serving/ },
        touches: {
            "one VM": [],
            "load-balanced": [
                "replace edge",
                "replace edge-443",
                ...edgeRelease,
                "replace edge-edge",
                "replace edge-edge",
                "update edge-proxies",
                "update edge-unhealthy-proxies-443",
            ].sort(),
        },
    },
    {
        matrix: "`vpcId`",
        change: "vpcId, from the default VPC to yours: every security group is replaced while the instances keep their subnets, which EC2 refuses (make a new stack instead)",
        after: teamPlacement,
        breaks: { "load-balanced": /would be replace: the edge would stop serving/ },
        check: (change) => {
            // The engine sets ignored inputs back to their old values before it diffs and creates
            // (docs/engine-rules.md, p): every instance is replaced, each in its old subnet, of the
            // default VPC, with the new VPC's security groups, which EC2 refuses.
            const replacedInstances = [...change.plan]
                .filter(([key, action]) => key.startsWith("aws:ec2/instance:Instance::") && action === "replace")
                .map(([key]) => key);
            assert.ok(replacedInstances.length > 0);
            for (const key of replacedInstances) {
                const [old, fresh] = [change.before, change.after].map((run) => run.find((r) => resourceKey(r.type, r.name) === key));
                assert.ok(fresh?.options.ignoreChanges.includes("subnetId"), `${key} keeps its subnet through a replacement`);
                assert.notEqual(old?.inputs.subnetId, fresh?.inputs.subnetId, `${key}: the kept subnet is not one of the new VPC's`);
            }
            const groups = change.after.filter((r) => r.type === "aws:ec2/securityGroup:SecurityGroup");
            assert.ok(groups.length > 0 && groups.every((g) => g.inputs.vpcId === teamPlacement.vpcId), "the new groups are the new VPC's");
        },
        touches: {
            "one VM": [
                ...["edge-backend", "edge-deploy", "edge-deploy-release", "edge-proxy", "edge-proxy", "edge-proxy"],
                ...[1, 2, 3].flatMap((n) => [
                    fleetNotice(n).slice("replace ".length),
                    `edge-backends-backend-${n}`,
                    `edge-backends-backend-${n}-deploy`,
                    `edge-backends-backend-${n}-health`,
                ]),
            ]
                .map((name) => `replace ${name}`)
                .concat(
                    [1, 2, 3].flatMap((n) => [`update edge-backend-${n}-instance-check`, `update edge-backend-${n}-system-check`]),
                    ["update edge-dashboard", "update edge-proxy-instance-check", "update edge-proxy-system-check"],
                )
                .sort(),
            "load-balanced": [
                ...[
                    "edge",
                    "edge-443",
                    "edge-443",
                    "edge-backend",
                    "edge-deploy",
                    "edge-deploy-release",
                    "edge-edge",
                    "edge-edge",
                    "edge-load-balancer",
                    "edge-proxies-refresh",
                    "edge-proxy",
                ],
                ...[1, 2, 3].flatMap((n) => [
                    fleetNotice(n).slice("replace ".length),
                    `edge-backends-backend-${n}`,
                    `edge-backends-backend-${n}-deploy`,
                    `edge-backends-backend-${n}-health`,
                ]),
            ]
                .map((name) => `replace ${name}`)
                .concat(
                    [1, 2, 3].flatMap((n) => [`update edge-backend-${n}-instance-check`, `update edge-backend-${n}-system-check`]),
                    ["update edge-dashboard", "update edge-proxies", "update edge-proxies", "update edge-unhealthy-proxies-443"],
                )
                .sort(),
        },
    },
    {
        matrix: "`proxyCount` 1 → 2 or more",
        change: "proxyCount 1 → 2: a balancer and the proxies' group are created; the single VM and its address go at the end (a migration: the endpoint moves)",
        only: "one VM",
        after: { proxyCount: "2" },
        touches: {
            "one VM": [
                ...[
                    "edge",
                    "edge-443",
                    "edge-443",
                    "edge-fleet-sockets",
                    "edge-load-balancer",
                    "edge-proxies",
                    "edge-proxies",
                    "edge-proxies-refresh",
                    "edge-unhealthy-proxies-443",
                ].map((n) => `create ${n}`),
                ...["edge", "edge-proxy", "edge-proxy", "edge-proxy-instance-check", "edge-proxy-system-check"].map((n) => `delete ${n}`),
                ...[1, 2, 3].map((n) => `replace edge-backends-backend-${n}-health`),
                ...edgeRelease,
                "replace edge-edge",
                "replace edge-edge",
                "update edge-dashboard",
                "update edge-proxy",
            ].sort(),
        },
    },
    {
        matrix: "`proxyCount` 2 → 3",
        change: "proxyCount 2 → 3: the group grows in place; no serving proxy is touched; the fleet's socket alarm follows",
        only: "load-balanced",
        before: { proxyCount: "2" },
        after: { proxyCount: "3" },
        touches: { "load-balanced": ["update edge-fleet-sockets", "update edge-proxies"] },
    },
    {
        matrix: "`proxyCount` 3 → 2",
        change: "proxyCount 3 → 2: the group shrinks in place; the proxy it removes is deregistered and drained first; the fleet's socket alarm follows",
        only: "load-balanced",
        before: { proxyCount: "3" },
        after: { proxyCount: "2" },
        touches: { "load-balanced": ["update edge-fleet-sockets", "update edge-proxies"] },
    },
];

/** Rows of docs/aws.md's change matrix checked by a test of their own: the file, and words of its title. */
const testedApart: Record<string, { readonly file: string; readonly title: string }> = {
    "Upgrading a stack made before the `WssEdge` component": { file: "component.test.ts", title: "upgrades a stack made before it" },
    "A new release of this project (its deploy script, health agent, socket ceiling)": {
        file: "dayTwo.test.ts",
        title: "a new release of this project (its deploy script",
    },
    "The cap behind the balancer (a proxy of more than about 3.5 GiB)": {
        file: "dayTwo.test.ts",
        title: "the cap behind the balancer (55,000 per proxy)",
    },
};

/** The first cell of each row of docs/aws.md's change matrix, as written. */
function matrixRows(): string[] {
    const docs = readFileSync(join(__dirname, "..", "docs", "aws.md"), "utf8");
    const table = docs.slice(docs.indexOf("| Change | One VM | Load-balanced |"));
    const lines = table.slice(0, table.indexOf("\n\n")).split("\n").slice(2);
    return lines.map((line) => line.split(" | ")[0].replace(/^\| /, ""));
}

describe("the change matrix: what `pulumi up` does after each change, in both shapes, and what keeps serving", () => {
    it("every row of the docs' change matrix is checked by a test, and every test here is a row there", () => {
        const documented = matrixRows();
        assert.ok(documented.length >= 30, `read ${documented.length} rows`);
        for (const row of documented) {
            const apart = testedApart[row];
            if (apart)
                assert.ok(
                    readFileSync(join(__dirname, apart.file), "utf8").includes(`it(\`${apart.title}`) ||
                        readFileSync(join(__dirname, apart.file), "utf8").includes(`it("${apart.title}`),
                    `${row}: no test titled "${apart.title}" in ${apart.file}`,
                );
            else
                assert.ok(
                    rows.some((r) => r.matrix === row),
                    `docs/aws.md's row "${row}" has no test`,
                );
        }
        for (const row of rows)
            assert.ok(documented.includes(row.matrix), `"${row.change}" checks "${row.matrix}", which docs/aws.md's matrix does not have`);
    });

    for (const row of rows) {
        for (const shape of row.only ? [row.only] : (Object.keys(shapes) as Shape[])) {
            it(`${row.change} [${shape}]`, async () => {
                const change: Change = await changeBetween(
                    { config: { ...shapes[shape], ...row.before }, options: row.beforeOptions },
                    {
                        config: { ...shapes[shape], ...row.after },
                        replaced: row.replaced,
                        lost: row.lost,
                        skipRefresh: row.skipRefresh,
                        options: row.options,
                    },
                );
                assert.deepEqual(touched(change.plan), [...(row.touches[shape] ?? [])].sort());
                row.check?.(change, shape);
                const breaks = row.breaks?.[shape];
                if (breaks) assert.throws(() => assertAvailability(change), breaks);
                else assertAvailability(change);
            });
        }
    }

    it("no input of any resource holds a path of this checkout", async () => {
        for (const shape of Object.values(shapes)) {
            const { resources } = await runEdgeProgram(shape);
            const checkout = require("node:path").resolve(__dirname, "..");
            for (const resource of resources) {
                assert.ok(!JSON.stringify(resource.inputs).includes(checkout), `${resource.type} ${resource.name} holds ${checkout}`);
            }
        }
    });

    it("two runs of the same program register identical inputs", async () => {
        const [first, second] = [await runEdgeProgram(dev), await runEdgeProgram(dev)];
        const strip = (r: RegisteredResource) => ({ type: r.type, name: r.name, inputs: JSON.stringify(r.inputs), options: r.options });
        assert.deepEqual(second.resources.map(strip), first.resources.map(strip));
    });

    it("a new release of this project (its deploy script, its health agent, its socket ceiling): a new release id, so one rollout carries all", async () => {
        const { resources, outputs } = await runEdgeProgram(dev);
        const release = bundleFiles(named(resources, "edge-deploy-release").inputs.content);
        assert.equal(release["backend-health-agent.sh"], readFileSync(join(__dirname, "../deploy/backend-health-agent.sh"), "utf8"));
        assert.equal(release["deploy-edge-config.sh"], readFileSync(join(__dirname, "../deploy/deploy-edge-config.sh"), "utf8"));
        assert.match(release["deploy-edge-config.sh"], /Restart=on-failure/, "the script installs NGINX's restart drop-in");
        assert.match(release["nginx.conf"], /limit_conn edge_sockets 38550;/);
        const triggers = (await resolveOutput(named(resources, "edge-deploy").inputs.triggers)) as string[];
        assert.ok(triggers.includes(`release:${outputs.edgeRelease}`), "the release id, a hash of all it carries, is a trigger");
        assert.ok(triggers.includes(`config:${sha256(release["nginx.conf"])}`), "and, readable in a preview, the config's digest");
    });

    it("the cap behind the balancer (55,000 per proxy): a larger proxy's release says so; one proxy on its own keeps its memory's ceiling", async () => {
        const balanced = await runEdgeProgram({ proxyCount: "2", proxyInstanceType: "c6i.xlarge" });
        assert.match(
            bundleFiles(named(balanced.resources, "edge-deploy-release").inputs.content)["nginx.conf"],
            /limit_conn edge_sockets 55000;/,
        );
        const single = await runEdgeProgram({ proxyInstanceType: "c6i.xlarge" });
        assert.match(
            bundleFiles(named(single.resources, "edge-deploy-release").inputs.content)["nginx.conf"],
            /limit_conn edge_sockets 8482;/,
            "84,811, counted on 10 keys past NGINX's 65,535 per key",
        );
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

    it("ignores AMI changes on every instance, and replaces (not reboots) an instance whose user data changes; the single proxy is replaced for a new type or a new IPv6 address too", async () => {
        const { resources } = await runEdgeProgram(dev);
        for (const instance of resources.filter((r) => r.type === "aws:ec2/instance:Instance")) {
            assert.deepEqual(instance.options.ignoreChanges, ["ami", "subnetId"], instance.name);
            assert.equal(instance.inputs.userDataReplaceOnChange, true, instance.name);
        }
        assert.deepEqual(
            resources.find((r) => r.type === "aws:ec2/instance:Instance" && r.name === "edge-proxy")?.options.replaceOnChanges,
            // A new type, and an IPv6 address (which cloud-init configures at first boot only).
            ["instanceType", "ipv6AddressCount"],
        );
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

    it("every document waits for first boot and fails with cloud-init's own account of a failed one", async () => {
        const { resources } = await runEdgeProgram(dev);
        const documents = resources.filter((r) => r.type === "aws:ssm/document:Document");
        assert.equal(documents.length, 4);
        for (const document of documents) {
            const [first] = JSON.parse(document.inputs.content).mainSteps[0].inputs.runCommand;
            assert.match(first, /^rc=0; cloud-init status --wait >\/dev\/null 2>&1 \|\| rc=\$\?\n/, document.name);
            assert.match(first, /cloud-init status --long >&2/, document.name);
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
