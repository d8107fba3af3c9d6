import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";

const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex");

/** Settles once every registration in flight is done. Exported by the runtime, not declared in its types. */
export const waitForRPCs = (require("@pulumi/pulumi/runtime/settings") as { waitForRPCs: () => Promise<void> }).waitForRPCs;

/** One resource as the program registered it. */
export interface RegisteredResource {
    readonly type: string;
    readonly name: string;
    /** Inputs with secrets unwrapped. */
    readonly inputs: Record<string, any>;
    /** Top-level input names that arrived as Pulumi secrets. */
    readonly secretInputs: ReadonlySet<string>;
    /** Its URN as Pulumi's mocks make it, which names only the parent's own type (runtime/mocks.js newUrn); test/support/engineUrns.ts gives the engine's. */
    readonly urn: string;
    /** The parent's URN as the mocks make it; "" at the stack's root. */
    readonly parent: string;
    /** URNs of the resources this one waits for (its inputs' sources and `dependsOn`). */
    readonly dependencies: readonly string[];
    /** Former identities the engine looks for in the state before it creates this resource (alias specs as sent). */
    readonly aliases: readonly AliasSpec[];
    /** The resource options the engine receives, which decide what a later change does. */
    readonly options: {
        readonly protect: boolean;
        readonly ignoreChanges: readonly string[];
        readonly replaceOnChanges: readonly string[];
        readonly deleteBeforeReplace: boolean;
    };
}

/** An alias as the SDK sends it (proto Alias.Spec); empty fields mean "as the resource's own". */
export interface AliasSpec {
    readonly name: string;
    readonly type: string;
    readonly parentUrn: string;
    readonly noParent: boolean;
}

interface AliasMessage {
    getUrn(): string;
    hasSpec(): boolean;
    getSpec(): { getName(): string; getType(): string; getParenturn(): string; getNoparent(): boolean } | undefined;
}

/** What the engine receives with each registration besides the inputs, which Pulumi's mocks do not pass on. */
interface RegistrationRequest {
    getAliasesList(): AliasMessage[];
    getType(): string;
    getName(): string;
    getParent(): string;
    getDependenciesList(): string[];
    getProtect(): boolean;
    getIgnorechangesList(): string[];
    getReplaceonchangesList(): string[];
    getDeletebeforereplace(): boolean;
}

export interface ProgramRun {
    readonly resources: RegisteredResource[];
    readonly outputs: Record<string, unknown>;
    /** The raw exported Outputs, to inspect secretness. */
    readonly exports: Record<string, pulumi.Output<unknown>>;
}

export const mockBackendIps = ["10.0.1.21", "10.0.2.22", "10.0.3.23", "10.0.1.24", "10.0.2.25", "10.0.3.26"];
export const mockEdgeIp = "198.51.100.7";
/** A proxy instance's public address under the mocks: the nth proxy's, or its replacement's. */
const mockProxyPublicIp = (n: number, replaced: boolean) => `203.0.113.${n + (replaced ? 100 : 0)}`;
/** Every public address a proxy instance can have under the mocks (up to 10 proxies, replaced or not). */
export const mockProxyPublicIps = [false, true].flatMap((replaced) =>
    Array.from({ length: 10 }, (_, i) => mockProxyPublicIp(i + 1, replaced)),
);
export const mockVpcCidr = "172.31.0.0/16";

export interface RunOptions {
    preview?: boolean;
    /** Receives registrations even when the program throws. */
    registered?: RegisteredResource[];
    /** Resources (`type::name`) that the cloud has replaced since the last run: they get a new ID and outputs, as after `--replace` or a lost VM. */
    replaced?: readonly string[];
    /** Secret keys given in plain text, as `pulumi config set` without `--secret` would. */
    plaintext?: readonly string[];
    /** What the certificate resources report as their expiry. */
    validityEndTime?: string;
    /** The AMI release the image look-ups find (a new one is published every few weeks). */
    amiRelease?: string;
    /** The region's default subnets, as EC2 lists them (a new zone adds one). */
    subnetIds?: readonly string[];
    /** The VPCs and subnets EC2 describes besides the default ones (a team's own network); VPCs and subnets the program creates join them. */
    network?: MockNetwork;
    /** The program to run (a module path); index.ts by default. */
    program?: string;
    /** Resources (`type::name`) the engine finds in the state under another name (an alias): the cloud object keeps the old name's ID and outputs. */
    formerNames?: ReadonlyMap<string, string>;
}

export interface MockNetwork {
    /** VPC endpoints the VPCs have already (a central networking team's, or this stack's own from an earlier run). */
    readonly endpoints?: readonly {
        id: string;
        vpcId: string;
        serviceName: string;
        vpcEndpointType: string;
        privateDnsEnabled: boolean;
        routeTableIds: string[];
        tags: Record<string, string>;
    }[];
    readonly vpcs: readonly {
        id: string;
        cidrBlock: string;
        cidrBlockAssociations?: { cidrBlock: string }[];
        ipv6CidrBlock?: string;
        enableDnsSupport: boolean;
        enableDnsHostnames: boolean;
    }[];
    readonly subnets: readonly {
        id: string;
        vpcId: string;
        ipv6CidrBlock?: string;
        availabilityZone: string;
        mapPublicIpOnLaunch: boolean;
        /** Its own route table; without one it uses the VPC's main table. */
        routeTableId?: string;
    }[];
}

function endpoint(id: string, vpcId: string, service: string, vpcEndpointType: string, routeTableIds: string[], name: string) {
    const serviceName = `com.amazonaws.eu-west-1.${service}`;
    return {
        id,
        vpcId,
        serviceName,
        vpcEndpointType,
        privateDnsEnabled: vpcEndpointType === "Interface",
        routeTableIds,
        tags: { Name: name },
    };
}

function dualStackSubnet(id: string, availabilityZone: string, isPublic: boolean, ipv6CidrBlock: string) {
    return { id, vpcId: "vpc-0d0d0d0d0d0d0d0d0", availabilityZone, mapPublicIpOnLaunch: isPublic, ipv6CidrBlock };
}

/** A team's own VPC, as the adoption tests describe it: three public and three private subnets over three zones, and another team's subnet. */
export const teamNetwork: MockNetwork = {
    endpoints: [
        // This stack's own, from an earlier run: no clash with itself.
        endpoint("vpce-0own", "vpc-0a1b2c3d4e5f60001", "ssm", "Interface", [], "wss-edge-dev-edge-ssm"),
        // A central team's, in the dual-stack VPC.
        endpoint("vpce-0central-ssm", "vpc-0d0d0d0d0d0d0d0d0", "ssm", "Interface", [], "central-ssm"),
        endpoint("vpce-0central-s3", "vpc-0d0d0d0d0d0d0d0d0", "s3", "Gateway", ["rtb-0main-vpc-0d0d0d0d0d0d0d0d0"], "central-s3"),
    ],
    vpcs: [
        {
            id: "vpc-0a1b2c3d4e5f60001",
            cidrBlock: "10.20.0.0/16",
            cidrBlockAssociations: [{ cidrBlock: "10.20.0.0/16" }, { cidrBlock: "100.64.0.0/16" }],
            enableDnsSupport: true,
            enableDnsHostnames: true,
        },
        { id: "vpc-0f0f0f0f0f0f0f0f0", cidrBlock: "10.99.0.0/16", enableDnsSupport: true, enableDnsHostnames: false },
        {
            id: "vpc-0d0d0d0d0d0d0d0d0",
            cidrBlock: "10.30.0.0/16",
            ipv6CidrBlock: "2001:db8:30::/56",
            enableDnsSupport: true,
            enableDnsHostnames: true,
        },
    ],
    subnets: [
        {
            id: "subnet-0aaa0000000000001",
            vpcId: "vpc-0a1b2c3d4e5f60001",
            availabilityZone: "eu-west-1a",
            mapPublicIpOnLaunch: true,
            routeTableId: "rtb-0public",
        },
        {
            id: "subnet-0aaa0000000000002",
            vpcId: "vpc-0a1b2c3d4e5f60001",
            availabilityZone: "eu-west-1b",
            mapPublicIpOnLaunch: true,
            routeTableId: "rtb-0public",
        },
        {
            id: "subnet-0aaa0000000000003",
            vpcId: "vpc-0a1b2c3d4e5f60001",
            availabilityZone: "eu-west-1c",
            mapPublicIpOnLaunch: true,
            routeTableId: "rtb-0public",
        },
        {
            id: "subnet-0bbb0000000000001",
            vpcId: "vpc-0a1b2c3d4e5f60001",
            availabilityZone: "eu-west-1a",
            mapPublicIpOnLaunch: false,
            routeTableId: "rtb-0private-a",
        },
        {
            id: "subnet-0bbb0000000000002",
            vpcId: "vpc-0a1b2c3d4e5f60001",
            availabilityZone: "eu-west-1b",
            mapPublicIpOnLaunch: false,
            routeTableId: "rtb-0private-b",
        },
        { id: "subnet-0bbb0000000000003", vpcId: "vpc-0a1b2c3d4e5f60001", availabilityZone: "eu-west-1c", mapPublicIpOnLaunch: false },
        { id: "subnet-0ccc0000000000001", vpcId: "vpc-0f0f0f0f0f0f0f0f0", availabilityZone: "eu-west-1a", mapPublicIpOnLaunch: true },
        dualStackSubnet("subnet-0ddd0000000000001", "eu-west-1a", true, "2001:db8:30:1::/64"),
        dualStackSubnet("subnet-0ddd0000000000002", "eu-west-1b", true, "2001:db8:30:2::/64"),
        dualStackSubnet("subnet-0ddd0000000000003", "eu-west-1c", true, ""),
        dualStackSubnet("subnet-0eee0000000000001", "eu-west-1a", false, ""),
        dualStackSubnet("subnet-0eee0000000000002", "eu-west-1b", false, ""),
    ],
};

/** The stack settings that place the edge in teamNetwork's dual-stack VPC (its third public subnet has no IPv6 range). */
export const dualStackPlacement = {
    vpcId: "vpc-0d0d0d0d0d0d0d0d0",
    publicSubnetIds: '["subnet-0ddd0000000000001","subnet-0ddd0000000000002"]',
    privateSubnetIds: '["subnet-0eee0000000000001","subnet-0eee0000000000002"]',
};

/** The stack settings that place the edge in teamNetwork. */
export const teamPlacement = {
    vpcId: "vpc-0a1b2c3d4e5f60001",
    publicSubnetIds: '["subnet-0aaa0000000000001","subnet-0aaa0000000000002"]',
    privateSubnetIds: '["subnet-0bbb0000000000001","subnet-0bbb0000000000002","subnet-0bbb0000000000003"]',
};

/**
 * Runs index.ts under Pulumi's unit-test mocks with the given stack config (keys without the
 * project prefix), and returns every resource it registered and every output, resolved.
 */
export async function runEdgeProgram(config: Record<string, string>, options: RunOptions = {}): Promise<ProgramRun> {
    // Pulumi's runtime captures a stack trace for every promise it makes (runtime/debuggable.js),
    // and under tsx each capture walks source maps: over half of a mock run. One frame is enough
    // here; errors keep their messages, and assertions after the run get whole stacks again.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 1;
    try {
        return await runWithMocks(config, options);
    } finally {
        Error.stackTraceLimit = stackTraceLimit;
    }
}

async function runWithMocks(config: Record<string, string>, options: RunOptions): Promise<ProgramRun> {
    const resources: RegisteredResource[] = options.registered ?? [];
    const base = options.network ?? teamNetwork;
    const network = { vpcs: [...base.vpcs], subnets: [...base.subnets], endpoints: base.endpoints };
    const registrations = new Map<string, Pick<RegisteredResource, "urn" | "parent" | "dependencies" | "aliases" | "options">>();
    pulumi.runtime.setAllConfig(
        Object.fromEntries([["aws:region", "eu-west-1"], ...Object.entries(config).map(([k, v]) => [`wss-edge:${k}`, v])]),
        ["wss-edge:tlsCertificate", "wss-edge:tlsPrivateKey"].filter((key) => !options.plaintext?.includes(key.split(":")[1])),
    );
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                const secretInputs = new Set(Object.keys(args.inputs).filter((key) => containsSecret(args.inputs[key])));
                const inputs = unwrapSecrets(args.inputs) as Record<string, any>;
                const registration = registrations.get(`${args.type}::${args.name}`)!;
                resources.push({ type: args.type, name: args.name, inputs, secretInputs, ...registration });
                const replaced = options.replaced?.includes(`${args.type}::${args.name}`) ?? false;
                // A resource found in the state under a former name is that same cloud object: its ID and outputs are the old ones.
                const cloudName = options.formerNames?.get(`${args.type}::${args.name}`) ?? args.name;
                const state = mockState(args.type, cloudName, inputs, replaced, options.validityEndTime ?? "2027-11-27T11:00:00Z");
                const id = replaced ? `${cloudName}-id-2` : `${cloudName}-id`;
                // EC2 describes what the program creates.
                if (args.type === "aws:ec2/vpc:Vpc")
                    network.vpcs.push({
                        id,
                        cidrBlock: inputs.cidrBlock,
                        enableDnsSupport: inputs.enableDnsSupport ?? true,
                        enableDnsHostnames: inputs.enableDnsHostnames ?? false,
                    });
                if (args.type === "aws:ec2/subnet:Subnet")
                    network.subnets.push({
                        id,
                        vpcId: inputs.vpcId,
                        availabilityZone: inputs.availabilityZone,
                        mapPublicIpOnLaunch: inputs.mapPublicIpOnLaunch ?? false,
                    });
                return { id, state: { ...args.inputs, ...state } };
            },
            call(args) {
                return mockCall(
                    args.token,
                    args.inputs,
                    options.amiRelease ?? "2026.11",
                    options.subnetIds ?? ["subnet-c", "subnet-a", "subnet-b"],
                    network,
                );
            },
        },
        "wss-edge",
        "dev",
        options.preview ?? false,
    );
    const monitor = pulumi.runtime.getMonitor() as unknown as {
        registerResource(req: RegistrationRequest, callback: unknown): unknown;
        newUrn(parent: string, type: string, name: string): string;
    };
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, callback) => {
        registrations.set(`${req.getType()}::${req.getName()}`, {
            urn: monitor.newUrn(req.getParent(), req.getType(), req.getName()),
            parent: req.getParent(),
            dependencies: req.getDependenciesList(),
            aliases: req.getAliasesList().map((alias) => {
                const spec = alias.getSpec();
                if (!alias.hasSpec() || spec === undefined)
                    throw new Error(`alias by URN (${alias.getUrn()}): the tests read alias specs only`);
                return { name: spec.getName(), type: spec.getType(), parentUrn: spec.getParenturn(), noParent: spec.getNoparent() };
            }),
            options: {
                protect: req.getProtect(),
                ignoreChanges: req.getIgnorechangesList(),
                replaceOnChanges: req.getReplaceonchangesList(),
                deleteBeforeReplace: req.getDeletebeforereplace(),
            },
        });
        return register(req, callback);
    };
    const programPath = require.resolve(options.program ?? "../../index");
    delete require.cache[programPath];
    // As Pulumi's Node.js host does: a program that exports a function is run, and what it returns are the outputs.
    const program = require(programPath) as
        | Record<string, pulumi.Output<unknown>>
        | (() => Promise<Record<string, pulumi.Output<unknown>>>);
    const exports = program instanceof Function ? await program() : program;
    const outputs: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(exports)) outputs[key] = await resolveOutput(value);
    // Resources whose inputs wait on other outputs register later than the exports resolve.
    await waitForRPCs();
    return { resources, outputs, exports };
}

/** The registered resources of `type`. */
export const ofType = (resources: RegisteredResource[], type: string) => resources.filter((r) => r.type === type);

/** The cloud resource (not the component) named `name`; fails unless there is exactly one. */
export function named(resources: RegisteredResource[], name: string): RegisteredResource {
    const found = resources.filter((r) => r.name === name && !r.type.startsWith("wss-edge:"));
    if (found.length !== 1) throw new Error(`expected one resource named ${name}, found ${found.length}`);
    return found[0];
}

/** The files of a deploy bundle (one `<path> <base64>` line each), decoded. */
export const bundleFiles = (bundle: string): Record<string, string> =>
    Object.fromEntries(
        bundle
            .trim()
            .split("\n")
            .map((line) => line.split(" "))
            .map(([path, content]) => [path, Buffer.from(content, "base64").toString()]),
    );

/** The value inside an Output, once known. */
export function resolveOutput<T>(output: pulumi.Input<T>): Promise<T> {
    return new Promise((resolve) => pulumi.output(output).apply((value) => resolve(value as T)));
}

/** Any registered input's value, outputs resolved, untyped: what assertions compare. */
export const resolved = (value: unknown): Promise<any> => resolveOutput(value as pulumi.Input<unknown>);

export function secretness(output: pulumi.Output<unknown>): Promise<boolean> {
    return pulumi.isSecret(output);
}

/** Pulumi's wire marker for a secret value. */
const secretSignature = "4dabf18193072939515e22adb298388d";
const secretMarker = "1b47061264138c4ac30d75fd1eb44270";
const isSecretEnvelope = (v: any) => v !== null && typeof v === "object" && v[secretSignature] === secretMarker;

function containsSecret(value: unknown): boolean {
    if (isSecretEnvelope(value)) return true;
    if (Array.isArray(value)) return value.some(containsSecret);
    if (value !== null && typeof value === "object") return Object.values(value).some(containsSecret);
    return false;
}

function unwrapSecrets(value: any): unknown {
    if (isSecretEnvelope(value)) return unwrapSecrets(value.value);
    if (Array.isArray(value)) return value.map(unwrapSecrets);
    // Plain objects only: an asset keeps its class (its path is a promise).
    if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
    }
    return value;
}

function pem(kind: string, body: string): string {
    return `-----BEGIN ${kind}-----\n${Buffer.from(body).toString("base64")}\n-----END ${kind}-----\n`;
}

/** EC2's description of the instance types the tests use (memory in MiB). */
export const mockInstanceTypes: Record<string, { memorySize: number; defaultVcpus: number }> = {
    "c6i.large": { memorySize: 4096, defaultVcpus: 2 },
    "c6i.xlarge": { memorySize: 8192, defaultVcpus: 4 },
    "t3.small": { memorySize: 2048, defaultVcpus: 2 },
    "t3.medium": { memorySize: 4096, defaultVcpus: 2 },
    "t4g.nano": { memorySize: 512, defaultVcpus: 2 },
    "c7g.large": { memorySize: 4096, defaultVcpus: 2 },
    "c7g.2xlarge": { memorySize: 16384, defaultVcpus: 8 },
    "c7gn.16xlarge": { memorySize: 131072, defaultVcpus: 64 },
    "m6i.metal": { memorySize: 524288, defaultVcpus: 128 },
};

/**
 * What the cloud reports for a resource. A `replaced` one is a new object: new ID, new
 * address, new key or certificate.
 */
function mockState(
    type: string,
    name: string,
    inputs: Record<string, any>,
    replaced: boolean,
    validityEndTime: string,
): Record<string, unknown> {
    if (replaced) name = `${name} (replaced)`;
    switch (type) {
        case "aws:ec2/instance:Instance": {
            const backend = /backend-([0-9]+)/.exec(name);
            const privateIp = backend ? (replaced ? `10.0.9.${backend[1]}` : mockBackendIps[Number(backend[1]) - 1]) : "10.0.1.5";
            const proxy = /^edge-proxy(?:-([0-9]+))?/.exec(name);
            const publicIp = proxy ? mockProxyPublicIp(Number(proxy[1] ?? 1), replaced) : undefined;
            const ipv6Addresses = inputs.ipv6AddressCount ? [`2001:db8:30:1::${replaced ? "b" : "a"}`] : [];
            return { privateIp, publicIp, ipv6Addresses, arn: `arn:aws:ec2:eu-west-1:123456789012:instance/${name}` };
        }
        case "aws:lb/loadBalancer:LoadBalancer":
            return {
                zoneId: "Z2IFOLAFXWLO4F",
                dnsName: `${name.replace(" (replaced)", "-2")}-0123456789abcdef.elb.eu-west-1.amazonaws.com`,
                arn: `arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/${name}/0123456789abcdef`,
                arnSuffix: `net/${name}/0123456789abcdef`,
            };
        case "aws:lb/targetGroup:TargetGroup":
            return {
                arn: `arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/${name}/fedcba9876543210`,
                arnSuffix: `targetgroup/${name}/fedcba9876543210`,
            };
        case "aws:ec2/eip:Eip":
            return { publicIp: mockEdgeIp, allocationId: "eipalloc-0123" };
        case "tls:index/privateKey:PrivateKey":
            return {
                privateKeyPem: pem("PRIVATE KEY", `key ${name}`),
                privateKeyOpenssh: pem("OPENSSH PRIVATE KEY", `openssh ${name}`),
                publicKeyOpenssh: `ssh-ed25519 AAAA${Buffer.from(name).toString("base64")}`,
            };
        case "tls:index/selfSignedCert:SelfSignedCert":
        case "tls:index/locallySignedCert:LocallySignedCert":
            return { certPem: pem("CERTIFICATE", `certificate ${name} until ${validityEndTime}`), validityEndTime };
        case "tls:index/certRequest:CertRequest":
            return { certRequestPem: pem("CERTIFICATE REQUEST", `csr ${name}`) };
        case "pulumi-nodejs:dynamic/wss-edge:AcmeOrder":
            // What the CA gave: a leaf and its intermediate, valid 90 days, due for renewal with 30 left.
            return {
                certificatePem: `${pem("CERTIFICATE", `acme leaf ${name}`)}${pem("CERTIFICATE", "acme intermediate")}`,
                privateKeyPem: pem("PRIVATE KEY", `acme key ${name}`),
                notAfter: "2027-03-02T10:00:00.000Z",
                renewAfter: "2027-01-31T10:00:00.000Z",
            };
        case "aws:acm/certificate:Certificate":
            return { arn: `arn:aws:acm:eu-west-1:123456789012:certificate/${name}` };
        case "aws:ecr/repository:Repository":
            return {
                repositoryUrl: `123456789012.dkr.ecr.eu-west-1.amazonaws.com/${name}`,
                registryId: "123456789012",
                arn: `arn:aws:ecr:eu-west-1:123456789012:repository/${name}`,
            };
        case "docker:index/image:Image":
            return { repoDigest: `${String(inputs.imageName).split(":")[0]}@sha256:${(replaced ? "cd" : "ab").repeat(32)}` };
        case "aws:ssm/parameter:Parameter":
            return { arn: `arn:aws:ssm:eu-west-1:123456789012:parameter${inputs.name}` };
        case "aws:iam/role:Role":
        case "aws:iam/instanceProfile:InstanceProfile":
            return { arn: `arn:aws:iam::123456789012:role/${name}`, name };
        case "aws:route53/zone:Zone":
            return { zoneId: "Z0TEAMZONE000000001" };
        case "aws:route53/record:Record":
            return { fqdn: inputs.name };
        case "aws:ec2/vpcEndpoint:VpcEndpoint":
            return { arn: `arn:aws:ec2:eu-west-1:123456789012:vpc-endpoint/${name}` };
        case "aws:sns/topic:Topic":
            return { arn: `arn:aws:sns:eu-west-1:123456789012:${name}` };
        case "aws:s3/bucket:Bucket":
            return { arn: `arn:aws:s3:::${name}`, bucket: name };
        case "aws:kms/key:Key":
            return { arn: `arn:aws:kms:eu-west-1:123456789012:key/${name}` };
        case "aws:ssm/document:Document":
            // Each content is a new version of the document (SSM keeps them numbered).
            return {
                name: `${name}-id`,
                latestVersion: String(1 + (Number.parseInt(sha256Hex(String(inputs.content)).slice(0, 4), 16) % 97)),
            };
        case "aws:ec2/launchTemplate:LaunchTemplate":
            return { latestVersion: 1 + (Number.parseInt(sha256Hex(JSON.stringify(inputs)).slice(0, 4), 16) % 97) };
        case "aws:autoscaling/group:Group":
            return { name: `${name}-id`, arn: `arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:${name}` };
        default:
            return {};
    }
}

/** A failed invoke as the engine returns it: a gRPC error whose details are the provider's message (runtime/invoke.js reads `details`). */
const invokeError = (message: string) => Object.assign(new Error(message), { details: message });

function mockCall(
    token: string,
    inputs: Record<string, any>,
    amiRelease: string,
    subnetIds: readonly string[],
    network: MockNetwork,
): Record<string, unknown> {
    switch (token) {
        case "aws:index/getRegion:getRegion":
            return { region: "eu-west-1", name: "eu-west-1", id: "eu-west-1" };
        case "aws:ec2/getVpc:getVpc": {
            if (inputs.default) return { id: "vpc-0default", cidrBlock: mockVpcCidr, cidrBlockAssociations: [{ cidrBlock: mockVpcCidr }] };
            const vpc = network.vpcs.find((v) => v.id === inputs.id);
            if (vpc === undefined) throw invokeError(`InvalidVpcID.NotFound: The vpc ID '${inputs.id}' does not exist`);
            return vpc;
        }
        case "aws:ec2/getSubnet:getSubnet": {
            const subnet = network.subnets.find((s) => s.id === inputs.id);
            if (subnet === undefined) throw invokeError(`InvalidSubnetID.NotFound: The subnet ID '${inputs.id}' does not exist`);
            return subnet;
        }
        case "aws:ec2/getVpcEndpoint:getVpcEndpoint": {
            const found = (network.endpoints ?? []).filter((e) => e.vpcId === inputs.vpcId && e.serviceName === inputs.serviceName);
            if (found.length === 0) throw invokeError("no matching EC2 VPC Endpoint found");
            return found[0];
        }
        case "aws:ec2/getRouteTable:getRouteTable": {
            // The team VPC's private tables (its main one too) send IPv4 to a NAT; every other table to an
            // internet gateway; the dual-stack VPC's main table routes IPv6 to its gateway as well.
            const table = String(inputs.routeTableId);
            const isPrivate = table.startsWith("rtb-0private") || table === "rtb-0main-vpc-0a1b2c3d4e5f60001";
            return {
                routeTableId: table,
                routes: [
                    isPrivate ? { cidrBlock: "0.0.0.0/0", natGatewayId: "nat-0team" } : { cidrBlock: "0.0.0.0/0", gatewayId: "igw-0team" },
                    ...(table === "rtb-0main-vpc-0d0d0d0d0d0d0d0d0" ? [{ ipv6CidrBlock: "::/0", gatewayId: "igw-0team" }] : []),
                ],
            };
        }
        case "aws:ec2/getRouteTables:getRouteTables": {
            const filter = (name: string) =>
                (inputs.filters as { name: string; values: string[] }[]).find((f) => f.name === name)?.values[0];
            const subnet = network.subnets.find((s) => s.id === filter("association.subnet-id"));
            if (subnet) return { ids: subnet.routeTableId ? [subnet.routeTableId] : [] };
            return { ids: [`rtb-0main-${filter("vpc-id")}`] };
        }
        case "aws:ec2/getSubnets:getSubnets":
            return { ids: [...subnetIds] };
        case "aws:ec2/getAmi:getAmi": {
            // ami-<owner>-<release>, as the recorded state of earlier releases has it; Debian 13's says so too.
            const name = (inputs.filters as { name: string; values: string[] }[]).find((f) => f.name === "name")?.values[0] ?? "";
            return { id: `ami-${String(inputs.owners?.[0])}-${name.startsWith("debian-13") ? "debian-13-" : ""}${amiRelease}` };
        }
        case "aws:ec2/getInstanceType:getInstanceType":
            if (!(String(inputs.instanceType) in mockInstanceTypes))
                throw new Error(`mock: no description of instance type ${inputs.instanceType} (add it to mockInstanceTypes)`);
            return { ...mockInstanceTypes[String(inputs.instanceType)], instanceType: inputs.instanceType };
        case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                userName: "AWS",
                password: "registry-password",
                proxyEndpoint: "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            };
        default:
            return {};
    }
}
