/**
 * Generators of settings and backends for the property tests: every setting of the table, valid,
 * out of range, malformed or hostile.
 */
import fc from "fast-check";
import type { UpstreamServer } from "../../nginx/edgeConfigSpec";
import type { RawSettings } from "../../settings/edgeSettings";
import { type SettingDefinition, type SettingKey, settingKeys, settingsTable } from "../../settings/settingsTable";

/**
 * One seed for every property, the same on every run so a failure comes back when it is run
 * again; FUZZ_SEED=<n> explores others. fast-check prints the seed and the shrunk case on failure.
 */
export const fuzzSeed = Number(process.env.FUZZ_SEED ?? 20261127);

/** Strings that try to break out of a directive, a block, a quote or a variable. */
export const hostile = fc.oneof(
    fc.constantFrom(
        ";",
        "{",
        "}",
        '"',
        "'",
        "$host",
        "\n",
        "\r\n",
        " ",
        "\t",
        "\\",
        "#",
        "\u0000",
        "..",
        "/",
        "*",
        "ssl off;",
        "} server { listen 80;",
    ),
    fc.string({ unit: "binary", maxLength: 12 }),
);

const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
const hostName = fc.array(label, { minLength: 2, maxLength: 4 }).map((labels) => labels.join("."));

/** A PEM block of `label` around random base64 (the settings check its shape; the renderer never reads it). */
const pemBlock = (label: string) =>
    fc.base64String({ minLength: 4, maxLength: 64 }).map((body) => `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`);

/** CIDR blocks of both families; world ranges only where a setting allows them. */
const cidrs = (allowWorld: boolean) =>
    fc.constantFrom(
        ...(allowWorld ? ["0.0.0.0/0", "::/0"] : []),
        "203.0.113.0/24",
        "2001:db8::/32",
        "10.0.0.0/8",
        "192.0.2.128/25",
        "198.51.100.7/32",
    );

const origins = fc.oneof(
    fc.constant('["*"]'),
    fc
        .array(
            fc.tuple(
                fc.constantFrom("https", "http"),
                hostName,
                fc.option(fc.integer({ min: 1, max: 65535 }).filter((p) => p !== 443 && p !== 80)),
            ),
            { maxLength: 3 },
        )
        .map((list) => JSON.stringify(list.map(([scheme, host, port]) => `${scheme}://${host}${port === null ? "" : `:${port}`}`))),
);

/**
 * Values a setting accepts, by its kind and bounds in the table: a setting added there is
 * generated here with nothing written by hand (a new kind fails to compile until it has one).
 */
export function validValuesOf(definition: SettingDefinition): fc.Arbitrary<string> {
    switch (definition.kind) {
        case "integer":
            return fc.integer({ min: definition.min, max: definition.max }).map(String);
        case "boolean":
            return fc.constantFrom("true", "false");
        case "choice":
            return fc.constantFrom(...definition.choices);
        case "instanceType":
            return fc.constantFrom("t3.small", "c6i.large", "c7gn.16xlarge", "m6i.metal", "t4g.nano", "c7g.2xlarge");
        case "dnsName":
            return hostName;
        case "imageReference":
            return fc.constantFrom("ghcr.io/acme/app:1", "acme/app@sha256:abc", "app");
        case "cidrList":
            return fc.array(cidrs(definition.allowWorld), { minLength: 1, maxLength: 4 }).map((list) => JSON.stringify(list));
        case "pattern":
            return fc.stringMatching(new RegExp(definition.pattern)).filter((value) => new RegExp(definition.pattern).test(value));
        case "originList":
            return origins;
        case "resourceId": {
            const id = fc.stringMatching(new RegExp(definition.pattern));
            return definition.list ? fc.uniqueArray(id, { minLength: 1, maxLength: 4 }).map((ids) => JSON.stringify(ids)) : id;
        }
        case "pem":
            return definition.pem === "certificate"
                ? fc.array(pemBlock("CERTIFICATE"), { minLength: 1, maxLength: 3 }).map((chain) => chain.join(""))
                : fc.constantFrom("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY").chain(pemBlock);
    }
}

/** Values each setting of the table accepts. */
export const validValues = Object.fromEntries(settingKeys.map((key) => [key, validValuesOf(settingsTable[key] as SettingDefinition)])) as {
    readonly [K in SettingKey]: fc.Arbitrary<string>;
};

/**
 * A valid value of `key` other than its default, the same on every run. An integer gets one near
 * its minimum: a ceiling (maxSockets) above what a machine holds is lowered to it, and would
 * change nothing there.
 */
export function otherValueOf(key: SettingKey): string {
    const definition = settingsTable[key] as SettingDefinition;
    if (definition.kind === "integer") return String(definition.min + 1 === definition.default ? definition.min + 2 : definition.min + 1);
    const defaultValue = "default" in definition ? definition.default : undefined;
    const isDefault = (value: string) => value === String(defaultValue ?? "") || value === JSON.stringify(defaultValue) || value === "[]";
    return fc.sample(
        validValuesOf(definition).filter((value) => !isDefault(value)),
        { numRuns: 1, seed: fuzzSeed },
    )[0];
}

/** Values that are out of range, malformed, or try to inject NGINX syntax around a valid one. */
const invalidValue = (valid: fc.Arbitrary<string>) =>
    fc.oneof(
        hostile,
        fc.tuple(valid, hostile, valid).map(([a, b, c]) => a + b + c),
        fc.constantFrom(
            "-1",
            "0",
            "1e3",
            "0x10",
            " 7",
            "3.5",
            "",
            "99999999",
            "[]",
            '["0.0.0.0/0"',
            '["10.0.0.1/8"]',
            '["1.2.3.4/33"]',
            "t3",
            "TRUE",
        ),
    );

const {
    tlsCertificate,
    tlsPrivateKey,
    hostedZoneId,
    vpcId,
    publicSubnetIds,
    privateSubnetIds,
    backendEgress,
    certificate: certificateSource,
    acmeDirectory,
    ...standalone
} = validValues;

const subnetId = fc.stringMatching(/^subnet-[0-9a-f]{8,17}$/);
/** A VPC with its public and private subnets (none in both), and how the backends reach AWS. */
const network = fc
    .record({
        vpcId,
        subnets: fc.uniqueArray(subnetId, { minLength: 2, maxLength: 6 }),
        split: fc.integer({ min: 1, max: 5 }),
        backendEgress,
    })
    .map(({ vpcId, subnets, split, backendEgress }) => {
        const cut = Math.min(split, subnets.length - 1);
        return {
            vpcId,
            publicSubnetIds: JSON.stringify(subnets.slice(0, cut)),
            privateSubnetIds: JSON.stringify(subnets.slice(cut)),
            backendEgress,
        };
    });

/**
 * Settings the validator accepts: any of the table's, a certificate only with its key and the
 * name it is for, a zone only with that name, a VPC only with its subnets, and endpoints only with
 * the image built here (the rules across settings).
 */
export const validSettings: fc.Arbitrary<RawSettings> = fc
    .tuple(
        fc.record(standalone),
        fc.option(
            fc.record(
                { tlsCertificate, tlsPrivateKey, domainName: hostName },
                { requiredKeys: ["tlsCertificate", "tlsPrivateKey", "domainName"] },
            ),
        ),
        fc.option(fc.record({ hostedZoneId, domainName: hostName })),
        fc.option(network),
        fc.record({ certificate: certificateSource, acmeDirectory }, { requiredKeys: [] }),
    )
    .map(([settings, certificate, zone, network, source]): RawSettings => {
        const all: RawSettings = { ...settings, ...zone, ...certificate, ...network };
        if (all.backendEgress === "vpc-endpoints") delete all.backendImage;
        // The certificate's source only where what it needs is there; a directory only for acme.
        const fits = {
            acme: all.hostedZoneId !== undefined && !certificate,
            provided: !!certificate,
            "stack-ca": !certificate,
            auto: true,
        };
        if (source.certificate !== undefined && fits[source.certificate as keyof typeof fits]) all.certificate = source.certificate;
        const acme =
            all.certificate === "acme" || ((all.certificate ?? "auto") === "auto" && all.hostedZoneId !== undefined && !certificate);
        if (acme && source.acmeDirectory !== undefined) all.acmeDirectory = source.acmeDirectory;
        return all;
    });
const mixedSettings: fc.Arbitrary<RawSettings> = fc.record(
    Object.fromEntries(
        Object.entries(validValues).map(([key, valid]) => [
            key,
            fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: invalidValue(valid) }),
        ]),
    ) as { [K in SettingKey]: fc.Arbitrary<string> },
    { requiredKeys: [] },
);
/** Settings valid or not, each value possibly out of range, malformed or hostile. */
export const rawSettings: fc.Arbitrary<RawSettings> = fc.oneof(validSettings, mixedSettings);
const upstreamsOf = (address: fc.Arbitrary<string>): fc.Arbitrary<UpstreamServer[]> =>
    fc.array(fc.record({ address, port: fc.integer({ min: 1, max: 65535 }) }), { minLength: 1, maxLength: 8 });

/** Backends by address or name. */
export const upstreams = upstreamsOf(fc.oneof(ipv4, fc.constantFrom("2001:db8::1", "fd00::a", "backend.internal")));
/** Backends by address only: nginx -t resolves names, and this machine knows none but its own. */
export const resolvableUpstreams = upstreamsOf(fc.oneof(ipv4, fc.constantFrom("2001:db8::1", "fd00::a")));
