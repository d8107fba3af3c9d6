// Property-based tests over the settings validator and the renderer: any settings object is
// either rejected with a message naming its keys, or renders a config that NGINX accepts and
// that holds only the directives the renderer means to write.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { edgeConfigSpec } from "../nginx/edgeConfigFromSettings";
import { RenderError, renderNginxConfig } from "../nginx/renderNginxConfig";
import { vmProxyHost } from "../plan/capacity";
import { SettingsError, type StackSettings, validateSettings } from "../settings/edgeSettings";
import { settingKeys } from "../settings/settingsTable";
import { scratchLocalHost } from "./support/nginxCheck";
import { hostile, rawSettings, fuzzSeed as seed, upstreams, validSettings } from "./support/settingsArbitraries";

/** The proxy VM of the default stack: c6i.large (4 GiB, 2 vCPUs) in front of 3 backends. */
const vmHost = vmProxyHost({ memoryMiB: 4096, vcpus: 2, backendCount: 3 });

const { host: localHost, remove: removeScratch } = scratchLocalHost();
after(removeScratch);

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

/** Cases each property runs, every one of them: no time limit cuts a run short. */
const settingsCases = 3000;
const hostileSpecCases = 2000;

describe(`fuzzing settings and the renderer (seed ${seed}; FUZZ_SEED=<n> for another)`, () => {
    it("generates every setting of the settings table", () => {
        const seen = new Set(fc.sample(validSettings, { numRuns: 500, seed }).flatMap((raw) => Object.keys(raw)));
        assert.deepEqual(
            settingKeys.filter((key) => !seen.has(key)),
            [],
            "settings the generator never produces (test/support/settingsArbitraries.ts)",
        );
    });

    it(`rejects a settings object naming its keys, or renders only intended directives (${settingsCases} cases)`, () => {
        let rejected = 0;
        let accepted = 0;
        let unrenderable = 0;
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
                        unrenderable++;
                        return;
                    }
                    assertOnlyIntendedDirectives(config);
                }
                accepted++;
            }),
            { numRuns: settingsCases, seed },
        );
        assert.equal(rejected + accepted + unrenderable, settingsCases, "every case ran");
        assert.ok(rejected > 100 && accepted > 100, `exercised both outcomes (${rejected} rejected, ${accepted} accepted)`);
    });

    it(`refuses hostile values anywhere in a renderer spec, naming the field (${hostileSpecCases} cases)`, () => {
        const base = edgeConfigSpec(validateSettings({}), [{ address: "10.0.0.1", port: 8443 }], localHost, ["localhost"]);
        const fields = {
            serverName: (v: string) => ({ ...base, serverNames: [v] }),
            certificate: (v: string) => ({ ...base, tls: { ...base.tls, certificate: v } }),
            trusted: (v: string) => ({ ...base, backendTls: { ...base.backendTls, trustedCertificate: v } }),
            sslName: (v: string) => ({ ...base, backendTls: { ...base.backendTls, serverName: v } }),
            address: (v: string) => ({ ...base, upstream: { ...base.upstream, servers: [{ address: v, port: 1 }] } }),
            pid: (v: string) => ({ ...base, paths: { ...base.paths, pidFile: v } }),
        };
        let cases = 0;
        fc.assert(
            fc.property(fc.constantFrom(...Object.keys(fields)), fc.string({ maxLength: 6 }), hostile, (field, prefix, bad) => {
                cases++;
                const spec = fields[field as keyof typeof fields](`${prefix}${bad}`);
                try {
                    assertOnlyIntendedDirectives(renderNginxConfig(spec));
                } catch (error) {
                    if (error instanceof RenderError) return;
                    throw error;
                }
            }),
            { numRuns: hostileSpecCases, seed },
        );
        assert.equal(cases, hostileSpecCases, "every case ran");
    });
});
