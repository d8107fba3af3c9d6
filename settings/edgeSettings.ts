import { cidrProblem, isHostName } from "./addresses";
import {
    type EdgeSettingKey,
    type EdgeSettings,
    edgeSettingKeys,
    retiredSettings,
    type SettingDefinition,
    type SettingKey,
    type StackSettings,
    secretSettingKeys,
    settingKeys,
    settingsTable,
} from "./settingsTable";

export type { EdgeSettings, SettingKey, StackSettings } from "./settingsTable";

/** Raw values as configuration systems hold them: strings, with lists as JSON. */
export type RawSettings = Partial<Record<SettingKey, string>>;

export interface SettingProblem {
    readonly key: string;
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
 * Validates every setting of the AWS stack and returns them typed, or throws one SettingsError
 * that lists every problem found (key, value and rule), so a user fixes them all in one go.
 */
export function validateSettings(
    raw: RawSettings,
    namespace = "wss-edge",
    unknownUntilDeployed: ReadonlySet<SettingKey> = new Set(),
): StackSettings {
    const problems: SettingProblem[] = [];
    const values = readAll(
        raw,
        settingKeys,
        problems,
        (key) => retiredSettings[key] ?? `is not a setting of this stack (known: ${settingKeys.join(", ")})`,
    ) as StackSettings;
    if ((values.tlsCertificate === undefined) !== (values.tlsPrivateKey === undefined)) {
        const missing: SettingKey = values.tlsCertificate === undefined ? "tlsCertificate" : "tlsPrivateKey";
        if (!problems.some((p) => p.key === missing))
            problems.push({ key: missing, value: "(unset)", rule: "tlsCertificate and tlsPrivateKey are set together or not at all" });
    }
    if (values.tlsCertificate !== undefined && values.domainName === undefined) {
        problems.push({
            key: "domainName",
            value: "(unset)",
            rule: "is required when tlsCertificate is set: the certificate is for that name",
        });
    }
    problems.push(...placementProblems(values, unknownUntilDeployed));
    problems.push(...certificateProblems(values, unknownUntilDeployed).filter((p) => !problems.some((q) => q.key === p.key)));
    if (problems.length > 0) throw new SettingsError(namespace, problems);
    return values;
}

/** Where the edge's certificate comes from, with `auto` resolved. */
export type CertificateSource = "acme" | "provided" | "stack-ca";

/**
 * The `certificate` setting resolved: `auto` is acme with a name and a zone to prove it through,
 * provided with your own certificate, the stack's CA otherwise. The local stack and the twin have
 * neither name nor zone, so their `auto` is the stack's CA.
 */
export function certificateSourceOf(
    settings: Pick<StackSettings, "certificate"> & {
        readonly domainName?: string;
        readonly tlsCertificate?: string;
        readonly hostedZoneId?: unknown;
    },
): CertificateSource {
    if (settings.certificate !== "auto") return settings.certificate as CertificateSource;
    if (settings.tlsCertificate !== undefined) return "provided";
    return settings.domainName !== undefined && settings.hostedZoneId !== undefined ? "acme" : "stack-ca";
}

/** What each source of the certificate needs, and what it leaves unused. */
function certificateProblems(values: StackSettings, unknownUntilDeployed: ReadonlySet<SettingKey>): SettingProblem[] {
    const zoneGiven = values.hostedZoneId !== undefined || unknownUntilDeployed.has("hostedZoneId");
    const source = certificateSourceOf({ ...values, hostedZoneId: zoneGiven ? true : undefined });
    const chosen = `certificate ${source}${values.certificate === "auto" ? " (auto)" : ""}`;
    const problems: SettingProblem[] = [];
    const need = (key: SettingKey, why: string) => problems.push({ key, value: "(unset)", rule: `is required with ${chosen}: ${why}` });
    if (source === "acme") {
        if (values.domainName === undefined) need("domainName", "the name the certificate is for");
        if (!zoneGiven) need("hostedZoneId", "the zone that holds domainName, where the CA's DNS-01 challenge is answered");
    }
    if (source === "provided" && values.tlsCertificate === undefined) need("tlsCertificate", "your certificate chain for domainName");
    if (source !== "provided" && values.tlsCertificate !== undefined)
        problems.push({ key: "tlsCertificate", value: "[secret]", rule: `is used only with certificate provided, not ${chosen}` });
    if (source !== "acme" && values.acmeDirectory !== settingsTable.acmeDirectory.default)
        problems.push({
            key: "acmeDirectory",
            value: JSON.stringify(values.acmeDirectory),
            rule: `is used only with certificate acme, not ${chosen}`,
        });
    return problems;
}

const networkKeys = ["vpcId", "publicSubnetIds", "privateSubnetIds"] as const;

/**
 * The rules across the placement's settings: a VPC comes with its two sets of subnets, no subnet
 * is in both, a zone needs the name it holds, endpoints need private subnets and an image they can
 * reach. Keys in `unknownUntilDeployed` (a component's outputs of other resources) count as set.
 */
function placementProblems(values: StackSettings, unknownUntilDeployed: ReadonlySet<SettingKey>): SettingProblem[] {
    const problems: SettingProblem[] = [];
    const isSet = (key: (typeof networkKeys)[number] | "hostedZoneId") => {
        const value = values[key];
        return unknownUntilDeployed.has(key) || (Array.isArray(value) ? value.length > 0 : value !== undefined);
    };
    const given = networkKeys.filter(isSet);
    if (given.length > 0 && given.length < networkKeys.length) {
        for (const key of networkKeys.filter((k) => !given.includes(k)))
            problems.push({
                key,
                value: "(unset)",
                rule: `is set together with ${given.join(" and ")}: your VPC, the proxies' public subnets and the backends' private ones`,
            });
    }
    const both = (values.publicSubnetIds ?? []).filter((id) => (values.privateSubnetIds ?? []).includes(id));
    if (both.length > 0)
        problems.push({
            key: "privateSubnetIds",
            value: JSON.stringify(values.privateSubnetIds),
            rule: `names ${both.join(", ")}, a public subnet too: backends get no public address, so they need subnets of their own`,
        });
    if (isSet("hostedZoneId") && values.domainName === undefined)
        problems.push({
            key: "domainName",
            value: "(unset)",
            rule: "is required with hostedZoneId: the name of the record the stack creates in that zone",
        });
    if (values.backendEgress === "vpc-endpoints") {
        if (!isSet("privateSubnetIds"))
            problems.push({
                key: "backendEgress",
                value: '"vpc-endpoints"',
                rule: "applies to backends in privateSubnetIds; in the default VPC the backends reach AWS over their public addresses",
            });
        if (values.backendImage !== undefined)
            problems.push({
                key: "backendImage",
                value: JSON.stringify(values.backendImage),
                rule: "is pulled from its own registry, which backends behind VPC endpoints cannot reach: with backendEgress vpc-endpoints the stack builds backend/ into its own ECR repository; use backendEgress nat for your own image",
            });
    }
    return problems;
}

/**
 * Validates the edge's settings alone, as the local stack takes them (`--set key=value`): an
 * AWS-placement setting is refused by name, since nothing here would use it.
 */
export function validateEdgeSettings(raw: RawSettings, namespace = "local"): EdgeSettings {
    const problems: SettingProblem[] = [];
    const values = readAll(
        raw,
        edgeSettingKeys,
        problems,
        (key) =>
            retiredSettings[key] ??
            ((settingKeys as string[]).includes(key)
                ? "places the AWS stack (instances, ranges, names, images); the local stack does not take it"
                : `is not a setting of this stack (edge settings: ${edgeSettingKeys.join(", ")})`),
    ) as EdgeSettings;
    if (values.certificate === "provided")
        problems.push({
            key: "certificate",
            value: '"provided"',
            rule: "takes your certificate from the AWS stack's tlsCertificate, which the local stack and the twin do not take: they serve the stack's CA's (stack-ca) or one from their ACME stand-in, Pebble (acme)",
        });
    if (problems.length > 0) throw new SettingsError(namespace, problems);
    return values;
}

/** The edge settings out of a whole stack's. */
export function edgeSettingsOf(settings: StackSettings): EdgeSettings {
    return Object.fromEntries(edgeSettingKeys.map((key) => [key, settings[key]])) as EdgeSettings;
}

/** Reads `keys` from `raw` (defaults for what is absent), recording a problem for each bad or unexpected value. */
function readAll(
    raw: RawSettings,
    keys: readonly SettingKey[],
    problems: SettingProblem[],
    unexpected: (key: string) => string,
): Record<string, unknown> {
    for (const key of Object.keys(raw).filter((k) => !(keys as string[]).includes(k))) {
        problems.push({
            key,
            value: secretSettingKeys.has(key as SettingKey) ? "[secret]" : JSON.stringify(raw[key as SettingKey]),
            rule: unexpected(key),
        });
    }
    const values: Record<string, unknown> = {};
    for (const key of keys) {
        const text = raw[key];
        const setting: SettingDefinition = settingsTable[key];
        if (text === undefined) {
            if (!("default" in setting) || setting.default === undefined) {
                if (setting.kind !== "pem") problems.push({ key, value: "(unset)", rule: "is required" });
                continue;
            }
            values[key] = setting.default === "" ? undefined : setting.default;
            continue;
        }
        const parsed = parse(setting, text);
        if ("rule" in parsed)
            problems.push({ key, value: secretSettingKeys.has(key) ? "[secret]" : JSON.stringify(text), rule: parsed.rule });
        else values[key] = parsed.value;
    }
    return values;
}

const instanceTypePattern = /^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|metal|[0-9]*xlarge|metal-[0-9]+xl)$/;
const pemPatterns = {
    certificate: {
        pattern: /^-----BEGIN CERTIFICATE-----\r?\n[\s\S]+-----END CERTIFICATE-----\s*$/,
        rule: "must be a PEM certificate (chain)",
    },
    privateKey: {
        pattern: /^-----BEGIN (EC |RSA )?PRIVATE KEY-----\r?\n[\s\S]+-----END (EC |RSA )?PRIVATE KEY-----\s*$/,
        rule: "must be a PEM private key",
    },
};

/** One raw value, by the rules of its kind. */
function parse(setting: SettingDefinition, text: string): { value: unknown } | { rule: string } {
    const fail = (rule: string) => ({ rule });
    switch (setting.kind) {
        case "integer": {
            const n = /^-?[0-9]+$/.test(text.trim()) ? Number(text.trim()) : NaN;
            return Number.isSafeInteger(n) && n >= setting.min && n <= setting.max
                ? { value: n }
                : fail(`must be a whole number from ${setting.min} to ${setting.max}`);
        }
        case "boolean":
            return text === "true" ? { value: true } : text === "false" ? { value: false } : fail("must be true or false");
        case "choice":
            return setting.choices.includes(text) ? { value: text } : fail(`must be one of ${setting.choices.join(", ")}`);
        case "instanceType":
            return instanceTypePattern.test(text)
                ? { value: text }
                : fail("must look like an EC2 instance type, e.g. t3.small or c7gn.2xlarge");
        case "dnsName":
            if (text === "") return { value: undefined };
            return isHostName(text) && text.includes(".")
                ? { value: text.toLowerCase() }
                : fail("must be a fully qualified DNS name such as ws.example.com");
        case "imageReference":
            if (text === "") return { value: undefined };
            return /^[a-z0-9][a-z0-9._\-/:@]{0,254}$/.test(text)
                ? { value: text }
                : fail("must be an image reference such as ghcr.io/acme/ws-app:1.4 (lowercase, no spaces or quotes)");
        case "pem":
            if (text === "") return { value: undefined };
            return pemPatterns[setting.pem].pattern.test(text) ? { value: text } : fail(pemPatterns[setting.pem].rule);
        case "cidrList":
            return parseCidrList(text, setting.allowWorld);
        case "pattern":
            return new RegExp(setting.pattern).test(text) ? { value: text } : fail(setting.rule);
        case "originList":
            return parseOriginList(text);
        case "resourceId":
            return setting.list ? parseIdList(text, setting) : parseId(text, setting);
    }
}

/** A JSON list of web origins as browsers send them (scheme, host, port if not the default), or ["*"]. */
function parseOriginList(text: string): { value: string[] } | { rule: string } {
    const rule = 'must be a list of origins, e.g. ["https://app.example.com"]';
    let list: unknown;
    try {
        list = JSON.parse(text);
    } catch {
        return { rule };
    }
    if (!Array.isArray(list) || !list.every((o) => typeof o === "string")) return { rule };
    if (list.includes("*")) return list.length === 1 ? { value: ["*"] } : { rule: '"*" allows every origin and stands alone' };
    for (const origin of list as string[]) {
        const match = /^(https?):\/\/([a-z0-9.-]+)(?::([0-9]{1,5}))?$/.exec(origin);
        const port = match?.[3] === undefined ? undefined : Number(match[3]);
        if (!match || !isHostName(match[2]) || (port !== undefined && (port < 1 || port > 65535))) {
            return {
                rule: `${JSON.stringify(origin)} is not an origin such as https://app.example.com or https://app.example.com:8443 (lowercase, no path)`,
            };
        }
        if ((match[1] === "https" && port === 443) || (match[1] === "http" && port === 80)) {
            return {
                rule: `${JSON.stringify(origin)} names its scheme's default port, which browsers leave out: write ${match[1]}://${match[2]}`,
            };
        }
    }
    return { value: list as string[] };
}

type ResourceIdSetting = Extract<SettingDefinition, { kind: "resourceId" }>;

function parseId(text: string, setting: ResourceIdSetting): { value: string | undefined } | { rule: string } {
    if (text === "") return { value: undefined };
    return new RegExp(setting.pattern).test(text) ? { value: text } : { rule: `must be an ID such as ${setting.example}` };
}

/** A JSON list of IDs, each once. */
function parseIdList(text: string, setting: ResourceIdSetting): { value: string[] } | { rule: string } {
    const rule = `must be a list of IDs, e.g. ["${setting.example}"]`;
    let list: unknown;
    try {
        list = JSON.parse(text);
    } catch {
        return { rule };
    }
    if (!Array.isArray(list) || !list.every((id) => typeof id === "string")) return { rule };
    const bad = list.find((id) => !new RegExp(setting.pattern).test(id));
    if (bad !== undefined) return { rule: `${JSON.stringify(bad)} is not an ID such as ${setting.example}` };
    const repeated = list.find((id, i) => list.indexOf(id) !== i);
    if (repeated !== undefined) return { rule: `names ${repeated} twice` };
    return { value: list };
}

function parseCidrList(text: string, allowWorld: boolean): { value: string[] } | { rule: string } {
    if (text === "") return { rule: "is required" };
    let list: unknown;
    try {
        list = JSON.parse(text);
    } catch {
        return { rule: 'must be a list of CIDRs, e.g. ["203.0.113.0/24"]' };
    }
    if (!Array.isArray(list) || list.length === 0 || !list.every((c) => typeof c === "string")) {
        return { rule: 'must be a non-empty list of CIDRs, e.g. ["203.0.113.0/24"]' };
    }
    for (const cidr of list as string[]) {
        const problem = cidrProblem(cidr);
        if (problem) return { rule: `${JSON.stringify(cidr)} ${problem}` };
        if (!allowWorld && cidr.endsWith("/0"))
            return {
                rule: `${JSON.stringify(cidr)} opens SSH to the whole internet; name your own network, e.g. your office or VPN range`,
            };
    }
    return { value: list as string[] };
}

export type { EdgeSettingKey };
