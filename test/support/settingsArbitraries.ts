/**
 * Generators of settings and backends for the property tests: every setting of the table, valid,
 * out of range, malformed or hostile.
 */
import fc from "fast-check";
import type { UpstreamServer } from "../../nginx/edgeConfigSpec";
import type { RawSettings } from "../../settings/edgeSettings";
import type { SettingKey } from "../../settings/settingsTable";

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
const cidrList = (cidrs: fc.Arbitrary<string>) => fc.array(cidrs, { minLength: 1, maxLength: 4 }).map((list) => JSON.stringify(list));

/** A PEM block of `label` around random base64 (the settings check its shape; the renderer never reads it). */
const pemBlock = (label: string) =>
    fc.base64String({ minLength: 4, maxLength: 64 }).map((body) => `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`);

/**
 * Values each setting of the table accepts: typed against the table, so a setting added there
 * and not here fails to compile (and the fuzz test fails too).
 */
export const validValues: { readonly [K in SettingKey]: fc.Arbitrary<string> } = {
    backendCount: fc.integer({ min: 1, max: 20 }).map(String),
    proxyCount: fc.integer({ min: 1, max: 10 }).map(String),
    activeHealthChecks: fc.constantFrom("true", "false"),
    tunnelBufferKiB: fc.integer({ min: 1, max: 64 }).map(String),
    alarmEmail: fc.oneof(
        fc.constant(""),
        fc.tuple(label, hostName).map(([user, domain]) => `${user}@${domain}`),
    ),
    tlsCertificate: fc.array(pemBlock("CERTIFICATE"), { minLength: 1, maxLength: 3 }).map((chain) => chain.join("")),
    tlsPrivateKey: fc.constantFrom("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY").chain(pemBlock),
    backendInstanceType: fc.constantFrom("t3.small", "c7gn.16xlarge", "m6i.metal", "t4g.nano"),
    proxyInstanceType: fc.constantFrom("c6i.large", "t4g.nano", "c7g.2xlarge"),
    backendPort: fc.integer({ min: 1, max: 65535 }).map(String),
    domainName: hostName,
    allowedCidrs: cidrList(fc.constantFrom("0.0.0.0/0", "::/0", "203.0.113.0/24", "2001:db8::/32", "10.0.0.0/8", "192.0.2.128/25")),
    adminCidrs: cidrList(fc.constantFrom("203.0.113.0/24", "2001:db8:1::/48", "198.51.100.7/32")),
    backendImage: fc.constantFrom("ghcr.io/acme/app:1", "acme/app@sha256:abc", "app"),
    idleTimeoutSeconds: fc.integer({ min: 10, max: 86400 }).map(String),
    drainTimeoutSeconds: fc.integer({ min: 1, max: 604800 }).map(String),
    httpRedirect: fc.constantFrom("true", "false"),
    tlsPolicy: fc.constantFrom("mozilla-intermediate", "mozilla-modern"),
    backendTlsProtocol: fc.constantFrom("TLSv1.2", "TLSv1.3"),
    connectionsPerAddress: fc.integer({ min: 0, max: 65535 }).map(String),
    maxSockets: fc.integer({ min: 0, max: 1000000 }).map(String),
    affinity: fc.oneof(
        fc.constantFrom("client-address", "cookie"),
        fc.stringMatching(/^[A-Za-z0-9_]{1,32}$/).map((name) => `query:${name}`),
    ),
    affinityCookieName: fc.stringMatching(/^[A-Za-z0-9_]{1,32}$/),
    affinityCookieMaxAgeSeconds: fc.integer({ min: 60, max: 2592000 }).map(String),
    allowedOrigins: fc.oneof(
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
    ),
};

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

const { tlsCertificate, tlsPrivateKey, ...withoutCertificate } = validValues;

/**
 * Settings the validator accepts: any of the table's, and a certificate only with its key and
 * the name it is for (the rules across settings).
 */
export const validSettings: fc.Arbitrary<RawSettings> = fc
    .tuple(
        fc.record(withoutCertificate, { requiredKeys: ["adminCidrs"] }),
        fc.option(
            fc.record(
                { tlsCertificate, tlsPrivateKey, domainName: hostName },
                { requiredKeys: ["tlsCertificate", "tlsPrivateKey", "domainName"] },
            ),
        ),
    )
    .map(([settings, certificate]) => ({ ...settings, ...certificate }));
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
