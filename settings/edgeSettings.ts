import { isIP } from "node:net";
import { isHostName } from "../nginx/renderNginxConfig";
import { BackendTlsProtocol, TlsPolicyName, backendTlsProtocols, tlsPolicies } from "../nginx/tlsPolicy";

/** The validated, typed settings of one edge stack. Nothing downstream re-validates them. */
export interface EdgeSettings {
    readonly backendCount: number;
    readonly backendInstanceType: string;
    readonly proxyInstanceType: string;
    readonly backendPort: number;
    /** Public DNS name of the edge; without it the edge is reached by its Elastic IP. */
    readonly domainName?: string;
    /** Who may connect on 443 (and 80 when the redirect is on). */
    readonly allowedCidrs: readonly string[];
    /** Who may reach SSH on the proxy; the deploy itself connects from one of these. */
    readonly adminCidrs: readonly string[];
    /** A certificate for `domainName` from a public CA, instead of one from the stack's CA. */
    readonly userCertificate?: { readonly certificatePem: string; readonly privateKeyPem: string };
    /** A WebSocket app image to run instead of building `backend/`. */
    readonly backendImage?: string;
    /** Seconds a socket may stay silent from the backend side before NGINX closes it. */
    readonly idleTimeoutSeconds: number;
    /** Seconds workers retired by a reload keep serving their sockets. */
    readonly drainTimeoutSeconds: number;
    readonly httpRedirect: boolean;
    readonly tlsPolicy: TlsPolicyName;
    /** Protocol of the proxy's connections to the backends (see `backendTlsProtocols`). */
    readonly backendTlsProtocol: BackendTlsProtocol;
    /** Sockets one client address may hold at once; 0 means no limit. */
    readonly connectionsPerAddress: number;
    /** Sockets the edge admits at once; 0 means what the proxy's memory holds (see `proxySocketCeiling`). */
    readonly maxSockets: number;
}

/**
 * Each key with its default; a key that is absent takes its default. Pulumi.yaml declares
 * the same keys and defaults for `pulumi config` users (a test keeps the two in step).
 */
export const settingDefaults = {
    backendCount: "3",
    backendInstanceType: "t3.small",
    proxyInstanceType: "c6i.large",
    backendPort: "8443",
    domainName: "",
    backendImage: "",
    allowedCidrs: '["0.0.0.0/0","::/0"]',
    idleTimeoutSeconds: "300",
    drainTimeoutSeconds: "3600",
    httpRedirect: "false",
    tlsPolicy: "mozilla-intermediate",
    backendTlsProtocol: "TLSv1.2",
    connectionsPerAddress: "1000",
    maxSockets: "0",
} as const;

export const settingKeys = [
    "backendCount",
    "backendInstanceType",
    "proxyInstanceType",
    "backendPort",
    "domainName",
    "allowedCidrs",
    "adminCidrs",
    "tlsCertificate",
    "tlsPrivateKey",
    "backendImage",
    "idleTimeoutSeconds",
    "drainTimeoutSeconds",
    "httpRedirect",
    "tlsPolicy",
    "backendTlsProtocol",
    "connectionsPerAddress",
    "maxSockets",
] as const;

export type SettingKey = (typeof settingKeys)[number];
/** Keys whose values are secrets: never echoed, and read only from encrypted stack config. */
export const secretSettingKeys: ReadonlySet<SettingKey> = new Set(["tlsCertificate", "tlsPrivateKey"]);

/** Raw values as configuration systems hold them: strings, with lists as JSON. */
export type RawSettings = Partial<Record<SettingKey, string>>;

export interface SettingProblem {
    readonly key: SettingKey;
    /** The offending value as the user wrote it; secrets are never echoed. */
    readonly value: string;
    readonly rule: string;
}

export class SettingsError extends Error {
    constructor(
        readonly namespace: string,
        readonly problems: readonly SettingProblem[],
    ) {
        super(
            `invalid stack configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
                problems.map((p) => `  - ${namespace}:${p.key} = ${p.value}: ${p.rule}`).join("\n"),
        );
        this.name = "SettingsError";
    }
}

/**
 * Validates every key and returns typed settings, or throws one SettingsError that lists
 * every problem found (key, value and rule), so a user fixes them all in one go.
 */
export function validateSettings(raw: RawSettings, namespace = "wss-edge"): EdgeSettings {
    const problems: SettingProblem[] = [];
    const unknown = Object.keys(raw).filter((k) => !(settingKeys as readonly string[]).includes(k));
    for (const key of unknown) {
        problems.push({ key: key as SettingKey, value: JSON.stringify(raw[key as SettingKey]), rule: `is not a setting of this stack (known: ${settingKeys.join(", ")})` });
    }
    const read = new SettingReader(raw, problems);

    const backendCount = read.integer("backendCount", 1, 20);
    const backendInstanceType = read.matching("backendInstanceType", instanceTypePattern, "must look like an EC2 instance type, e.g. t3.small or c7gn.2xlarge");
    const proxyInstanceType = read.matching("proxyInstanceType", instanceTypePattern, "must look like an EC2 instance type, e.g. t3.small or c7gn.2xlarge");
    const backendPort = read.integer("backendPort", 1, 65535);
    const domainName = read.optional("domainName", (value, fail) =>
        isHostName(value) && value.includes(".") ? value.toLowerCase() : fail("must be a fully qualified DNS name such as ws.example.com"),
    );
    const allowedCidrs = read.cidrList("allowedCidrs", { allowWorld: true });
    const adminCidrs = read.cidrList("adminCidrs", { allowWorld: false });
    const certificatePem = read.optional("tlsCertificate", (value, fail) =>
        /^-----BEGIN CERTIFICATE-----\r?\n[\s\S]+-----END CERTIFICATE-----\s*$/.test(value) ? value : fail("must be a PEM certificate (chain)"),
    );
    const privateKeyPem = read.optional("tlsPrivateKey", (value, fail) =>
        /^-----BEGIN (EC |RSA )?PRIVATE KEY-----\r?\n[\s\S]+-----END (EC |RSA )?PRIVATE KEY-----\s*$/.test(value) ? value : fail("must be a PEM private key"),
    );
    if ((certificatePem === undefined) !== (privateKeyPem === undefined)) {
        const missing: SettingKey = certificatePem === undefined ? "tlsCertificate" : "tlsPrivateKey";
        problems.push({ key: missing, value: "(unset)", rule: "tlsCertificate and tlsPrivateKey are set together or not at all" });
    }
    if (certificatePem !== undefined && raw.domainName === undefined) {
        problems.push({ key: "domainName", value: "(unset)", rule: "is required when tlsCertificate is set: the certificate is for that name" });
    }
    const backendImage = read.optional("backendImage", (value, fail) =>
        /^[a-z0-9][a-z0-9._\-/:@]{0,254}$/.test(value) ? value : fail("must be an image reference such as ghcr.io/acme/ws-app:1.4 (lowercase, no spaces or quotes)"),
    );
    const idleTimeoutSeconds = read.integer("idleTimeoutSeconds", 10, 86400);
    const drainTimeoutSeconds = read.integer("drainTimeoutSeconds", 1, 7 * 86400);
    const httpRedirect = read.boolean("httpRedirect");
    const tlsPolicy = read.oneOf("tlsPolicy", Object.keys(tlsPolicies) as TlsPolicyName[]);
    const backendTlsProtocol = read.oneOf("backendTlsProtocol", backendTlsProtocols);
    // NGINX refuses a limit_conn of 65536 or more.
    const connectionsPerAddress = read.integer("connectionsPerAddress", 0, 65535);
    const maxSockets = read.integer("maxSockets", 0, 1000000);

    if (problems.length > 0) throw new SettingsError(namespace, problems);
    return {
        backendCount: backendCount!,
        backendInstanceType: backendInstanceType!,
        proxyInstanceType: proxyInstanceType!,
        backendPort: backendPort!,
        domainName,
        allowedCidrs: allowedCidrs!,
        adminCidrs: adminCidrs!,
        userCertificate: certificatePem && privateKeyPem ? { certificatePem, privateKeyPem } : undefined,
        backendImage,
        idleTimeoutSeconds: idleTimeoutSeconds!,
        drainTimeoutSeconds: drainTimeoutSeconds!,
        httpRedirect: httpRedirect!,
        tlsPolicy: tlsPolicy!,
        backendTlsProtocol: backendTlsProtocol!,
        connectionsPerAddress: connectionsPerAddress!,
        maxSockets: maxSockets!,
    };
}

const instanceTypePattern = /^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|metal|[0-9]*xlarge|metal-[0-9]+xl)$/;

/** Reads one key at a time, recording a problem instead of throwing, so all are reported. */
class SettingReader {
    constructor(
        private readonly raw: RawSettings,
        private readonly problems: SettingProblem[],
    ) {}

    private value(key: SettingKey): string | undefined {
        const value = this.raw[key];
        if (value !== undefined) return value;
        return (settingDefaults as Partial<Record<SettingKey, string>>)[key];
    }

    private shown(key: SettingKey, value: string): string {
        return secretSettingKeys.has(key) ? "[secret]" : JSON.stringify(value);
    }

    private fail(key: SettingKey, value: string, rule: string): undefined {
        this.problems.push({ key, value: this.shown(key, value), rule });
        return undefined;
    }

    optional<T>(key: SettingKey, parse: (value: string, fail: (rule: string) => undefined) => T | undefined): T | undefined {
        const value = this.value(key);
        if (value === undefined || value === "") return undefined;
        return parse(value, (rule) => this.fail(key, value, rule));
    }

    required<T>(key: SettingKey, parse: (value: string, fail: (rule: string) => undefined) => T | undefined): T | undefined {
        const value = this.value(key);
        if (value === undefined || value === "") {
            this.problems.push({ key, value: "(unset)", rule: "is required" });
            return undefined;
        }
        return parse(value, (rule) => this.fail(key, value, rule));
    }

    integer(key: SettingKey, min: number, max: number): number | undefined {
        return this.required(key, (value, fail) => {
            const n = /^-?[0-9]+$/.test(value.trim()) ? Number(value.trim()) : NaN;
            return Number.isSafeInteger(n) && n >= min && n <= max ? n : fail(`must be a whole number from ${min} to ${max}`);
        });
    }

    boolean(key: SettingKey): boolean | undefined {
        return this.required(key, (value, fail) => (value === "true" ? true : value === "false" ? false : fail("must be true or false")));
    }

    matching(key: SettingKey, pattern: RegExp, rule: string): string | undefined {
        return this.required(key, (value, fail) => (pattern.test(value) ? value : fail(rule)));
    }

    oneOf<T extends string>(key: SettingKey, choices: readonly T[]): T | undefined {
        return this.required(key, (value, fail) =>
            (choices as readonly string[]).includes(value) ? (value as T) : fail(`must be one of ${choices.join(", ")}`),
        );
    }

    cidrList(key: SettingKey, { allowWorld }: { allowWorld: boolean }): string[] | undefined {
        return this.required(key, (value, fail) => {
            let list: unknown;
            try {
                list = JSON.parse(value);
            } catch {
                return fail('must be a list of CIDRs, e.g. ["203.0.113.0/24"]');
            }
            if (!Array.isArray(list) || list.length === 0 || !list.every((c) => typeof c === "string")) {
                return fail('must be a non-empty list of CIDRs, e.g. ["203.0.113.0/24"]');
            }
            for (const cidr of list as string[]) {
                const problem = cidrProblem(cidr);
                if (problem) return fail(`${JSON.stringify(cidr)} ${problem}`);
                if (!allowWorld && cidr.endsWith("/0")) {
                    return fail(`${JSON.stringify(cidr)} opens SSH to the whole internet; name your own network, e.g. your office or VPN range`);
                }
            }
            return list as string[];
        });
    }
}

/** Why `cidr` is not a canonical IPv4 or IPv6 CIDR block, or undefined if it is one. */
export function cidrProblem(cidr: string): string | undefined {
    const match = /^([0-9A-Fa-f:.]+)\/([0-9]{1,3})$/.exec(cidr);
    const family = match ? isIP(match[1]) : 0;
    if (!match || family === 0) return "is not a CIDR block such as 203.0.113.0/24 or 2001:db8::/32";
    if (family === 6 && match[1].includes(".")) return "uses embedded IPv4 notation; write the IPv6 address in hex";
    const prefix = Number(match[2]);
    const bits = family === 4 ? 32 : 128;
    if (prefix > bits) return `has a prefix length above ${bits}`;
    const address = family === 4 ? ipv4ToBigInt(match[1]) : ipv6ToBigInt(match[1]);
    const hostMask = (1n << BigInt(bits - prefix)) - 1n;
    if ((address & hostMask) !== 0n) {
        const network = address & ~hostMask;
        const shown = family === 4 ? bigIntToIpv4(network) : `${match[1]} with the last ${bits - prefix} bits cleared`;
        return `has host bits set; did you mean ${shown}/${prefix}?`;
    }
    return undefined;
}

function ipv4ToBigInt(a: string): bigint {
    return a.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function bigIntToIpv4(n: bigint): string {
    return [24n, 16n, 8n, 0n].map((shift) => String((n >> shift) & 255n)).join(".");
}

function ipv6ToBigInt(a: string): bigint {
    const [head, tail] = a.includes("::") ? a.split("::") : [a, undefined];
    const headGroups = head ? head.split(":") : [];
    const tailGroups = tail ? tail.split(":") : [];
    const groups = tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups];
    return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}
