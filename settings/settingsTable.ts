/**
 * Every setting of the stack, declared once: its kind (which gives its TypeScript type and its
 * validation), default, bounds, description, whether it is secret, and its scope:
 *
 * - `edge`: how the edge behaves (timeouts, TLS, limits, fleet size). Pulumi and the local stack
 *   (`--set key=value`) both take these.
 * - `aws`: where and on what the AWS stack runs (instance types, ranges, names, images). Only
 *   Pulumi takes these.
 *
 * `Pulumi.yaml`'s `config:` block is generated from this table (`npm run settings:pulumi-yaml`),
 * and a test fails when it is stale. To add a setting: add a row here, regenerate Pulumi.yaml,
 * then use it where it belongs (the renderer's spec for an edge setting, components/wssEdge.ts for an AWS one).
 */

interface Common {
    readonly scope: "edge" | "aws";
    /** One or two sentences, as `pulumi config` and docs/configuration.md show them. */
    readonly description: string;
}

export type SettingDefinition =
    | (Common & { readonly kind: "integer"; readonly default: number; readonly min: number; readonly max: number })
    | (Common & { readonly kind: "boolean"; readonly default: boolean })
    | (Common & { readonly kind: "choice"; readonly default: string; readonly choices: readonly string[] })
    | (Common & { readonly kind: "instanceType"; readonly default: string })
    /** A fully qualified DNS name; "" (the default) means none. */
    | (Common & { readonly kind: "dnsName"; readonly default: "" })
    /** A container image reference; "" (the default) means none. */
    | (Common & { readonly kind: "imageReference"; readonly default: "" })
    /** CIDR blocks, IPv4 or IPv6; without a default, every stack must set it. */
    | (Common & { readonly kind: "cidrList"; readonly default?: readonly string[]; readonly allowWorld: boolean })
    /** Text of a given shape; `rule` says it in words. */
    | (Common & { readonly kind: "pattern"; readonly default: string; readonly pattern: string; readonly rule: string })
    /** Web origins (`https://host[:port]`), or `*`; the empty list has a meaning of its own, in the description. */
    | (Common & { readonly kind: "originList"; readonly default: readonly string[] })
    /** An AWS resource's ID (or a list of them) of a given shape; "" or [] (the default) means none. */
    | (Common & {
          readonly kind: "resourceId";
          readonly list: boolean;
          readonly default: "" | readonly [];
          readonly pattern: string;
          readonly example: string;
      })
    /** PEM text, always secret: never declared in Pulumi.yaml (a secret key can have no default there). */
    | (Common & { readonly kind: "pem"; readonly secret: true; readonly pem: "certificate" | "privateKey" });

export const settingsTable = {
    backendCount: {
        scope: "edge",
        kind: "integer",
        default: 3,
        min: 1,
        max: 20,
        description: "Number of backend instances (1 to 20), spread over the region's availability zones.",
    },
    proxyCount: {
        scope: "edge",
        kind: "integer",
        default: 1,
        min: 1,
        max: 10,
        description:
            "NGINX proxies (1 to 10). 1: one VM behind an Elastic IP. 2 or more: a Network Load Balancer across availability zones in front of that many VMs, deployed one at a time.",
    },
    activeHealthChecks: {
        scope: "edge",
        kind: "boolean",
        default: true,
        description:
            "Each proxy checks every backend's /healthz over mutual TLS every 2 s; after 2 failures it marks that backend down in NGINX (other clients keep their backend), after 2 successes it brings it back. Off: NGINX notices dead backends only passively.",
    },
    backendInstanceType: {
        scope: "aws",
        kind: "instanceType",
        default: "t3.small",
        description: "EC2 instance type of the backends. Graviton types (t4g, c7g, a1…) get an arm64 image.",
    },
    proxyInstanceType: {
        scope: "aws",
        kind: "instanceType",
        default: "c6i.large",
        description:
            "EC2 instance type of the NGINX proxy. Its memory sets how many WebSockets NGINX admits (38,550 on c6i.large; see the capacity table in docs/aws.md).",
    },
    backendPort: {
        scope: "aws",
        kind: "integer",
        default: 8443,
        min: 1,
        max: 65535,
        description: "Port the backends serve WSS on (1 to 65535). Only the proxy's security group may reach it.",
    },
    domainName: {
        scope: "aws",
        kind: "dnsName",
        default: "",
        description:
            "Public DNS name of the edge (point it at the proxyPublicIp output, or the loadBalancerDnsName output with proxyCount 2+). Without it, clients use the Elastic IP (or the balancer's name).",
    },
    vpcId: {
        scope: "aws",
        kind: "resourceId",
        list: false,
        default: "",
        pattern: "^vpc-[0-9a-f]{8,17}$",
        example: "vpc-0a1b2c3d4e5f67890",
        description:
            "Your VPC, set together with publicSubnetIds and privateSubnetIds. Empty: the region's default VPC, with the backends in its default subnets on public addresses used for egress only.",
    },
    publicSubnetIds: {
        scope: "aws",
        kind: "resourceId",
        list: true,
        default: [],
        pattern: "^subnet-[0-9a-f]{8,17}$",
        example: "subnet-0a1b2c3d4e5f67890",
        description:
            "Subnets of vpcId for the proxies (and the balancer with proxyCount 2+): public (their route table sends 0.0.0.0/0 to an internet gateway; the proxies ask for public addresses themselves), in two or more availability zones when load-balanced.",
    },
    privateSubnetIds: {
        scope: "aws",
        kind: "resourceId",
        list: true,
        default: [],
        pattern: "^subnet-[0-9a-f]{8,17}$",
        example: "subnet-0f9e8d7c6b5a43210",
        description:
            "Subnets of vpcId for the backends, which get no public address; in two or more availability zones when backendCount is 2+. They reach ECR, S3 and Systems Manager as backendEgress says.",
    },
    backendEgress: {
        scope: "aws",
        kind: "choice",
        default: "nat",
        choices: ["nat", "vpc-endpoints"],
        description:
            "How backends in privateSubnetIds reach ECR, S3 and Systems Manager. nat: through the NAT (or other default route) your private subnets already have. vpc-endpoints: the stack adds interface endpoints in the private subnets and an S3 gateway endpoint (cost and limits in docs/adopting.md); the backend image is then the one built here (no backendImage).",
    },
    hostedZoneId: {
        scope: "aws",
        kind: "resourceId",
        list: false,
        default: "",
        pattern: "^Z[0-9A-Z]{1,32}$",
        example: "Z0123456789ABCDEFGHIJ",
        description:
            "A Route 53 hosted zone that holds domainName: the stack creates the record the edge answers at (an alias to the balancer, or an A record to the Elastic IP).",
    },
    allowedCidrs: {
        scope: "aws",
        kind: "cidrList",
        default: ["0.0.0.0/0", "::/0"],
        allowWorld: true,
        description: "IPv4 and IPv6 ranges allowed on 443 (and 80 when httpRedirect is on).",
    },
    certificate: {
        scope: "edge",
        kind: "choice",
        default: "auto",
        choices: ["auto", "acme", "provided", "stack-ca"],
        description:
            "Where the edge's certificate comes from. acme: an ACME CA (acmeDirectory; Let's Encrypt by default) issues one certificate for domainName by DNS-01 through hostedZoneId, renewed by pulumi up once a third of its lifetime is left (locally and in the VM twin, Debian's Pebble stands in for the CA, for the name localhost). provided: tlsCertificate and tlsPrivateKey. stack-ca: the stack's own CA, which clients must trust (caCertificatePem). auto: acme with domainName and hostedZoneId, provided with tlsCertificate, stack-ca otherwise.",
    },
    acmeDirectory: {
        scope: "aws",
        kind: "pattern",
        default: "https://acme-v02.api.letsencrypt.org/directory",
        pattern: "^https://[^\\s\"']+$",
        rule: "must be the https:// URL of an ACME directory (RFC 8555)",
        description:
            "The ACME CA's directory for certificate acme: Let's Encrypt by default; its staging directory (https://acme-staging-v02.api.letsencrypt.org/directory) for trials, or another CA's.",
    },
    tlsCertificate: {
        scope: "aws",
        kind: "pem",
        secret: true,
        pem: "certificate",
        description:
            "PEM certificate chain for domainName from a public CA, set with --secret together with tlsPrivateKey (certificate provided).",
    },
    tlsPrivateKey: {
        scope: "aws",
        kind: "pem",
        secret: true,
        pem: "privateKey",
        description: "PEM private key of tlsCertificate, set with --secret.",
    },
    backendImage: {
        scope: "aws",
        kind: "imageReference",
        default: "",
        description:
            "Your own backend image (e.g. ghcr.io/acme/ws-app:1.4). Without it, backend/ is built and pushed to an ECR repository of the stack.",
    },
    idleTimeoutSeconds: {
        scope: "edge",
        kind: "integer",
        default: 300,
        min: 10,
        max: 86400,
        description:
            "Seconds a socket may go without data from the backend before NGINX closes it (10 to 86400). Backends ping every third of it, at most every 30 s.",
    },
    backendMaxSockets: {
        scope: "edge",
        kind: "integer",
        default: 0,
        min: 0,
        max: 1000000,
        description:
            "Most WebSockets one backend holds, all proxies together (0 to 1,000,000). 0: from the backend's memory (21,845 on t3.small; locally and on the VM twin, as on t3.small). A full backend is skipped: a new client goes on to the next backend of its hash order, and comes home on a later reconnect once there is room; with every backend full, new sockets get 502.",
    },
    rebalanceSeconds: {
        scope: "edge",
        kind: "integer",
        default: 60,
        min: 1,
        max: 3600,
        description:
            "When backends join or leave (backendCount) or the affinity mode changes, each backend moves the sockets whose key now hashes to another backend: closed with 1012 (reconnect now), one by one over this many seconds (1 to 3600), each reconnecting to its new backend.",
    },
    closeSpreadSeconds: {
        scope: "edge",
        kind: "integer",
        default: 10,
        min: 0,
        max: 300,
        description:
            "When a backend stops (a deploy, a new image, a scale-in), it closes its sockets one by one over this many seconds (0 to 300), each with 1001 and a random reconnect hint of up to 1 s, so their reconnects reach the other backends as a trickle. 0: all at once. See the reconnect section of docs/aws.md.",
    },
    backendBufferKiB: {
        scope: "edge",
        kind: "integer",
        // Measured through the local stack: 149–167 MiB/s echoed to a client that reads, for 16 and
        // 256 KiB messages, alike at 64, 256 and 1,024 KiB (run-to-run noise); 256 holds a quarter
        // of 1,024's memory per stuck client, with a margin over 64.
        default: 256,
        min: 16,
        max: 65536,
        description:
            "Most a backend holds, in KiB, for one client that does not read (16 to 65536): past it the backend stops reading from that client, so TCP pushes back through NGINX to the sender; a client stuck for half of idleTimeoutSeconds is closed with 1008.",
    },
    drainTimeoutSeconds: {
        scope: "edge",
        kind: "integer",
        default: 3600,
        min: 1,
        max: 7 * 86400,
        description: "Seconds NGINX workers retired by a reload keep their open sockets before closing them (worker_shutdown_timeout).",
    },
    httpRedirect: {
        scope: "edge",
        kind: "boolean",
        default: false,
        description: "Open port 80 and redirect it to HTTPS.",
    },
    tlsPolicy: {
        scope: "edge",
        kind: "choice",
        default: "mozilla-intermediate",
        choices: ["mozilla-intermediate", "mozilla-modern"],
        description: "TLS policy of the public listener, mozilla-intermediate (TLS 1.2 and 1.3) or mozilla-modern (TLS 1.3 only).",
    },
    proxyPlatform: {
        scope: "edge",
        kind: "choice",
        default: "debian-12",
        choices: ["debian-12", "debian-13"],
        description:
            "The proxy's operating system, and with it its NGINX and OpenSSL. debian-12: NGINX 1.22 with OpenSSL 3.0, the least memory per socket. debian-13: NGINX 1.26 with OpenSSL 3.5, which adds post-quantum key exchange (X25519MLKEM768, offered first by current browsers) and charges 90 KiB per held socket against 68, so a proxy admits about a quarter fewer. See the platform section of docs/benchmark.md.",
    },
    backendTlsProtocol: {
        scope: "edge",
        kind: "choice",
        default: "TLSv1.2",
        choices: ["TLSv1.2", "TLSv1.3"],
        description:
            "Protocol from the proxy to the backends. TLSv1.2 resumes every backend session (about 60% less proxy CPU per new WebSocket; session keys reused for up to 5 minutes); TLSv1.3 gives every connection its own keys.",
    },
    connectionsPerAddress: {
        scope: "edge",
        kind: "integer",
        default: 1000,
        // NGINX refuses a limit_conn of 65536 or more.
        min: 0,
        max: 65535,
        description:
            "Sockets one client address may hold at once on each proxy (limit_conn), 0 to 65535; 0 turns the limit off. Per proxy: behind the balancer, an address's sockets spread over the proxies, so it may hold up to proxyCount times this in all. Keep it high for clients behind carrier NAT.",
    },
    maxSockets: {
        scope: "edge",
        kind: "integer",
        default: 0,
        min: 0,
        max: 1000000,
        description:
            "WebSockets the edge admits at once before answering 503; 0 means what the proxy's memory holds (the maxSockets output). A larger value than that is lowered to it.",
    },
    tunnelBufferKiB: {
        scope: "edge",
        kind: "integer",
        default: 4,
        min: 1,
        max: 64,
        description:
            "KiB NGINX buffers per direction of each upgraded socket (proxy_buffer_size), 1 to 64; the backend's 101 response headers must fit in it too. Smaller holds more sockets per GiB; larger sends big messages in fewer TLS records. See the capacity section of docs/aws.md.",
    },
    affinity: {
        scope: "edge",
        kind: "pattern",
        default: "client-address",
        pattern: "^(client-address|cookie|query:[A-Za-z0-9_]{1,32})$",
        rule: "must be client-address, cookie, or query:<name> (the query parameter's name: 1 to 32 letters, digits or _)",
        description:
            "Which backend a socket goes to: client-address (ip_hash), cookie (an affinity cookie the edge issues), or query:<name> (a query parameter such as ?room=, consistently hashed). See the affinity section of docs/aws.md.",
    },
    affinityCookieName: {
        scope: "edge",
        kind: "pattern",
        default: "wss_affinity",
        pattern: "^[A-Za-z0-9_]{1,32}$",
        rule: "must be 1 to 32 letters, digits or _",
        description: "Name of the affinity cookie (affinity: cookie).",
    },
    affinityCookieMaxAgeSeconds: {
        scope: "edge",
        kind: "integer",
        default: 86400,
        min: 60,
        max: 2592000,
        description: "How long a browser keeps its affinity cookie (affinity: cookie), 60 s to 30 days.",
    },
    alarmEmail: {
        scope: "aws",
        kind: "pattern",
        default: "",
        pattern: "^$|^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$",
        rule: "must be an email address, such as ops@example.com",
        description:
            "Who is told by email when a proxy or backend fails its status checks (SNS asks them to confirm first). Empty: the alarms' topic has no subscriber.",
    },
    allowedOrigins: {
        scope: "edge",
        kind: "originList",
        default: [],
        description:
            'Web origins whose pages may open sockets, e.g. ["https://app.example.com"]; ["*"] allows any. Empty (the default): the edge\'s own origin only. Requests without Origin (native clients) always pass.',
    },
} as const satisfies Record<string, SettingDefinition>;

type Table = typeof settingsTable;
export type SettingKey = keyof Table;

/** The TypeScript type a kind of setting validates to. */
type ValueOf<D> = D extends { readonly kind: "integer" }
    ? number
    : D extends { readonly kind: "boolean" }
      ? boolean
      : D extends { readonly kind: "choice"; readonly choices: readonly (infer C)[] }
        ? C
        : D extends { readonly kind: "cidrList" | "originList" }
          ? readonly string[]
          : D extends { readonly kind: "resourceId"; readonly list: true }
            ? readonly string[]
            : D extends { readonly kind: "dnsName" | "imageReference" | "pem" | "resourceId" }
              ? string | undefined
              : string;

/** Every setting, validated and typed. */
export type StackSettings = { readonly [K in SettingKey]: ValueOf<Table[K]> };

type KeysOfScope<S> = { [K in SettingKey]: Table[K]["scope"] extends S ? K : never }[SettingKey];
export type EdgeSettingKey = KeysOfScope<"edge">;
/** The settings of the edge's behaviour: what the local stack takes, and what the renderer's spec reads. */
export type EdgeSettings = { readonly [K in EdgeSettingKey]: StackSettings[K] };

export const settingKeys = Object.keys(settingsTable) as SettingKey[];
export const edgeSettingKeys = settingKeys.filter((key) => settingsTable[key].scope === "edge") as EdgeSettingKey[];
export const secretSettingKeys: ReadonlySet<SettingKey> = new Set(settingKeys.filter((key) => "secret" in settingsTable[key]));

/** Choices of a `choice` setting, as their union type. */
export const choicesOf = <K extends { [P in SettingKey]: Table[P] extends { kind: "choice" } ? P : never }[SettingKey]>(key: K) =>
    settingsTable[key].choices as unknown as readonly StackSettings[K][];

export type TlsPolicyName = StackSettings["tlsPolicy"];
export type ProxyPlatform = StackSettings["proxyPlatform"];
export type BackendTlsProtocol = StackSettings["backendTlsProtocol"];
export const backendTlsProtocols = choicesOf("backendTlsProtocol");

/**
 * The `config:` block of Pulumi.yaml, as the table gives it: every setting but the secret ones,
 * with its Pulumi type, its default (none for a required one) and its description.
 */
export function pulumiConfigBlock(): Record<string, { type: string; items?: { type: string }; default?: unknown; description: string }> {
    const block: ReturnType<typeof pulumiConfigBlock> = {};
    for (const key of settingKeys) {
        const setting: SettingDefinition = settingsTable[key];
        if (setting.kind === "pem") continue;
        const type =
            setting.kind === "integer"
                ? "integer"
                : setting.kind === "boolean"
                  ? "boolean"
                  : setting.kind === "cidrList" || setting.kind === "originList" || (setting.kind === "resourceId" && setting.list)
                    ? "array"
                    : "string";
        block[key] = {
            type,
            ...(type === "array" ? { items: { type: "string" } } : {}),
            ...(setting.default === undefined ? {} : { default: setting.default }),
            description: setting.description,
        };
    }
    return block;
}

/** Settings this stack once took, and what a stack that still sets one is told. */
export const retiredSettings: Readonly<Record<string, string>> = {
    adminCidrs:
        "is no longer used: deploys go through Systems Manager and no security group admits SSH; reach a VM with Session Manager (aws ssm start-session --target <instance id>). Remove it: pulumi config rm adminCidrs",
};
