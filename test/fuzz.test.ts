// Property-based tests over the settings validator and the renderer: any settings object is
// either rejected with a message naming its keys, or renders a config that NGINX accepts and
// that holds only the directives the renderer means to write.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { awsProxyHost, edgeConfigSpec } from "../nginx/edgeConfigFromSettings";
import type { UpstreamServer } from "../nginx/edgeConfigSpec";
import { RenderError, renderNginxConfig } from "../nginx/renderNginxConfig";
import { type RawSettings, SettingsError, type StackSettings, validateSettings } from "../settings/edgeSettings";
import { settingKeys } from "../settings/settingsTable";
import { nginxTest, removeTestPki, scratchLocalHost } from "./support/nginxCheck";

/** The proxy VM of the default stack: c6i.large (4 GiB, 2 vCPUs) in front of 3 backends. */
const vmHost = awsProxyHost({ memoryMiB: 4096, vcpus: 2, backendCount: 3 });

const { host: localHost, remove: removeScratch } = scratchLocalHost();
after(async () => {
    await removeTestPki();
    removeScratch();
});

/** Strings that try to break out of a directive, a block, a quote or a variable. */
const hostile = fc.oneof(
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

/** Values each key accepts. */
const validValues = {
    backendCount: fc.integer({ min: 1, max: 20 }).map(String),
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

const validSettings = fc.record(validValues, { requiredKeys: ["adminCidrs"] });
const mixedSettings = fc.record(
    Object.fromEntries(
        Object.entries(validValues).map(([key, valid]) => [
            key,
            fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: invalidValue(valid) }),
        ]),
    ) as {
        [K in keyof typeof validValues]: fc.Arbitrary<string>;
    },
    { requiredKeys: [] },
);
const rawSettings: fc.Arbitrary<RawSettings> = fc.oneof(validSettings, mixedSettings);
const upstreams: fc.Arbitrary<UpstreamServer[]> = fc.array(
    fc.record({
        address: fc.oneof(ipv4, fc.constantFrom("2001:db8::1", "fd00::a", "backend.internal")),
        port: fc.integer({ min: 1, max: 65535 }),
    }),
    { minLength: 1, maxLength: 8 },
);

/** Every directive name the renderer writes in any configuration. */
const knownDirectives = new Set([
    ...[
        "user",
        "worker_processes",
        "worker_rlimit_nofile",
        "worker_shutdown_timeout",
        "pid",
        "error_log",
        "events",
        "worker_connections",
        "http",
    ],
    ...[
        "server_tokens",
        "access_log",
        "client_header_timeout",
        "large_client_header_buffers",
        "limit_conn_zone",
        "limit_conn",
        "map",
        "default",
        "''",
    ],
    ...[
        "client_body_temp_path",
        "proxy_temp_path",
        "fastcgi_temp_path",
        "uwsgi_temp_path",
        "scgi_temp_path",
        "upstream",
        "ip_hash",
        "server",
    ],
    ...[
        "ssl_protocols",
        "ssl_ciphers",
        "ssl_ecdh_curve",
        "ssl_prefer_server_ciphers",
        "ssl_session_cache",
        "ssl_session_timeout",
        "ssl_session_tickets",
        "ssl_buffer_size",
    ],
    ...[
        "listen",
        "server_name",
        "ssl_reject_handshake",
        "ssl_certificate",
        "ssl_certificate_key",
        "add_header",
        "location",
        "default_type",
        "return",
        "proxy_pass",
    ],
    ...[
        "proxy_http_version",
        "proxy_set_header",
        "proxy_read_timeout",
        "proxy_send_timeout",
        "proxy_connect_timeout",
        "proxy_buffer_size",
        "proxy_buffers",
        "proxy_next_upstream",
    ],
    ...["set_real_ip_from", "real_ip_header"],
    ...[
        "proxy_next_upstream_tries",
        "proxy_next_upstream_timeout",
        "proxy_ssl_verify",
        "proxy_ssl_verify_depth",
        "proxy_ssl_trusted_certificate",
    ],
    ...[
        "proxy_ssl_name",
        "proxy_ssl_server_name",
        "proxy_ssl_protocols",
        "proxy_ssl_certificate",
        "proxy_ssl_certificate_key",
        "proxy_ssl_session_reuse",
    ],
    "proxy_ssl_ciphers",
    "hash",
    "if",
    "stub_status",
]);

/** Structural check: balanced blocks, one directive per line ending in `;`, only known names. */
function assertOnlyIntendedDirectives(config: string): void {
    let depth = 0;
    // Inside a map, each line is a pair: a source value (quoted, a regex, '' or default) and a result.
    let mapDepth: number | undefined;
    for (const raw of config.split("\n")) {
        const line = raw.trim();
        if (line === "" || line.startsWith("#")) continue;
        // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this looks for.
        assert.doesNotMatch(line, /[\u0000-\u001f]/, `control character in ${JSON.stringify(line)}`);
        if (mapDepth !== undefined && line !== "}") {
            assert.match(
                line,
                /^(default|''|"[^"{};]*"|~\*?\S+)\s+(''|"[^"{}]*"|[^\s"{};]+);$/,
                `not a map entry: ${JSON.stringify(line)}`,
            );
            continue;
        }
        const name = line.split(/[\s;]/)[0];
        assert.ok(knownDirectives.has(name) || line === "}", `unexpected directive ${JSON.stringify(name)} in ${JSON.stringify(line)}`);
        if (line.endsWith("{")) {
            depth++;
            if (name === "map") mapDepth = depth;
        } else if (line === "}") {
            if (mapDepth === depth) mapDepth = undefined;
            depth--;
        } else assert.match(line, /^[^;{}]*;$/, `not a single directive: ${JSON.stringify(line)}`);
        assert.ok(depth >= 0, "unbalanced braces");
    }
    assert.equal(depth, 0, "unbalanced braces");
}

/**
 * One seed for every property here, the same on every run so a failure comes back when it is run
 * again; FUZZ_SEED=<n> explores others. fast-check prints the seed and the shrunk case on failure.
 */
const seed = Number(process.env.FUZZ_SEED ?? 20261127);

describe(`fuzzing settings and the renderer (seed ${seed}; FUZZ_SEED=<n> for another)`, () => {
    it("rejects a settings object naming its keys, or renders only intended directives (thousands of cases)", () => {
        let rejected = 0;
        let accepted = 0;
        fc.assert(
            fc.property(rawSettings, upstreams, (raw, servers) => {
                let settings: StackSettings;
                try {
                    settings = validateSettings(raw);
                } catch (error) {
                    assert.ok(error instanceof SettingsError, String(error));
                    assert.ok(error.problems.length > 0);
                    for (const problem of error.problems) {
                        assert.ok((settingKeys as readonly string[]).includes(problem.key), `problem names an unknown key ${problem.key}`);
                        assert.ok(error.message.includes(`wss-edge:${problem.key} = `));
                    }
                    rejected++;
                    return;
                }
                for (const host of [vmHost, localHost]) {
                    let config: string;
                    try {
                        config = renderNginxConfig(edgeConfigSpec(settings, servers, host, [settings.domainName ?? "localhost"]));
                    } catch (error) {
                        // Only upstream addresses come from outside the settings here.
                        assert.ok(error instanceof RenderError && error.field.startsWith("upstream.servers"), String(error));
                        return;
                    }
                    assertOnlyIntendedDirectives(config);
                }
                accepted++;
            }),
            { numRuns: 3000, interruptAfterTimeLimit: 30000, seed },
        );
        assert.ok(rejected > 100 && accepted > 100, `exercised both outcomes (${rejected} rejected, ${accepted} accepted)`);
    });

    it("40 valid settings objects render configs that nginx -t accepts", async () => {
        const cases = fc.sample(fc.tuple(validSettings, upstreams), { numRuns: 40, seed });
        for (const [raw, servers] of cases) {
            // nginx -t resolves host names, and this machine knows none but its own.
            const resolvable = servers.filter((server) => server.address !== "backend.internal");
            if (resolvable.length === 0) continue;
            const settings = validateSettings(raw);
            const config = renderNginxConfig(edgeConfigSpec(settings, resolvable, localHost, [settings.domainName ?? "localhost"]));
            const result = await nginxTest(config);
            assert.ok(result.ok, `${JSON.stringify(raw)}\n${result.output}`);
        }
    });

    it("refuses hostile values anywhere in a renderer spec, naming the field", () => {
        const base = edgeConfigSpec(
            validateSettings({ adminCidrs: '["203.0.113.0/24"]' }),
            [{ address: "10.0.0.1", port: 8443 }],
            localHost,
            ["localhost"],
        );
        const fields = {
            serverName: (v: string) => ({ ...base, serverNames: [v] }),
            certificate: (v: string) => ({ ...base, tls: { ...base.tls, certificate: v } }),
            trusted: (v: string) => ({ ...base, backendTls: { ...base.backendTls, trustedCertificate: v } }),
            sslName: (v: string) => ({ ...base, backendTls: { ...base.backendTls, serverName: v } }),
            address: (v: string) => ({ ...base, upstream: { ...base.upstream, servers: [{ address: v, port: 1 }] } }),
            pid: (v: string) => ({ ...base, paths: { ...base.paths, pidFile: v } }),
        };
        fc.assert(
            fc.property(fc.constantFrom(...Object.keys(fields)), fc.string({ maxLength: 6 }), hostile, (field, prefix, bad) => {
                const spec = fields[field as keyof typeof fields](`${prefix}${bad}`);
                try {
                    assertOnlyIntendedDirectives(renderNginxConfig(spec));
                } catch (error) {
                    if (error instanceof RenderError) return;
                    throw error;
                }
            }),
            { numRuns: 2000, interruptAfterTimeLimit: 20000, seed },
        );
    });
});
