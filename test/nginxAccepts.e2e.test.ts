// NGINX itself on what the renderer writes: Debian's `nginx -t` loads every shape of config (the
// proxy VM's and the local stack's, each setting's variants, generated settings) with real
// certificates, and refuses a broken one.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { edgeConfigSpec } from "../nginx/edgeConfigFromSettings";
import { renderNginxConfig } from "../nginx/renderNginxConfig";
import { type RawSettings, validateSettings } from "../settings/edgeSettings";
import { nginxTest, removeTestPki, scratchLocalHost } from "./support/nginxCheck";
import { runEdgeProgram } from "./support/pulumiProgram";
import { render, specFor } from "./support/renderFixtures";
import { requiring, unlessRoot } from "./support/requirements";
import { resolvableUpstreams, fuzzSeed as seed, validSettings } from "./support/settingsArbitraries";

// `nginx -t` creates the pid file and temp folders, so they must point somewhere real.
const { host: localHost, remove: removeScratch } = scratchLocalHost();
/** The proxy VM's config names /run and /var/log/nginx, which only root may write. */
const asRoot = requiring(unlessRoot("the VM config uses /run and /var/log/nginx"));

after(async () => {
    await removeTestPki();
    removeScratch();
});

describe("nginx -t accepts every config the renderer produces", () => {
    const variants: [string, RawSettings][] = [
        ["the defaults", {}],
        ["the HTTP redirect", { httpRedirect: "true" }],
        ["the TLS 1.3-only policy", { tlsPolicy: "mozilla-modern" }],
        ["TLS 1.3 to the backends", { backendTlsProtocol: "TLSv1.3" }],
        ["no per-address limit", { connectionsPerAddress: "0" }],
        ["one backend", { backendCount: "1" }],
        ["long idle and drain timeouts", { idleTimeoutSeconds: "86400", drainTimeoutSeconds: "604800" }],
        ["the smallest tunnel buffers", { tunnelBufferKiB: "1" }],
        ["16 KiB tunnel buffers", { tunnelBufferKiB: "16" }],
        ["the largest tunnel buffers", { tunnelBufferKiB: "64" }],
    ];
    for (const [name, raw] of variants) {
        it(`for the proxy VM with ${name}`, asRoot, async () => {
            const result = await nginxTest(render(raw));
            assert.ok(result.ok, result.output);
        });
        it(`for the local stack with ${name}`, async () => {
            const result = await nginxTest(render(raw, localHost));
            assert.ok(result.ok, result.output);
        });
    }

    it("for twenty IPv4 and IPv6 backends behind a wildcard name", async () => {
        const many = Array.from({ length: 20 }, (_, i) => ({ address: i % 2 ? `10.0.${i}.10` : `fd00::${i + 1}`, port: 8443 + i }));
        const result = await nginxTest(renderNginxConfig(specFor({}, localHost, many, ["*.ws.example.com", "ws.example.com"])));
        assert.ok(result.ok, result.output);
    });

    it("behind a load balancer, with the HTTP redirect", async () => {
        const behind = { ...localHost, listen: { ...localHost.listen, proxyProtocolFrom: ["127.0.0.1", "10.0.0.0/16"] } };
        const config = renderNginxConfig(specFor({ httpRedirect: "true" }, { ...behind, httpRedirectPort: 18080 }));
        assert.match(config, /listen 127\.0\.0\.1:\d+ ssl proxy_protocol default_server reuseport;/);
        assert.match(config, /listen 127\.0\.0\.1:18080 proxy_protocol;/, "on the listen address, as the TLS server");
        assert.match(config, /set_real_ip_from 127\.0\.0\.1;\n\s*set_real_ip_from 10\.0\.0\.0\/16;\n\s*real_ip_header proxy_protocol;/);
        const result = await nginxTest(config);
        assert.ok(result.ok, result.output);
    });

    it("for a socket ceiling above NGINX's 65,535 per key, counted on 10 or 100 keys", async () => {
        for (const maxSockets of ["90112", "1000000"]) {
            const result = await nginxTest(renderNginxConfig(specFor({ maxSockets }, localHost)));
            assert.ok(result.ok, result.output);
        }
    });

    it("on Debian 13's NGINX 1.26 (proxyPlatform debian-13), with the post-quantum hybrid group first", async () => {
        const config = render({ proxyPlatform: "debian-13" }, localHost);
        assert.match(config, /ssl_ecdh_curve X25519MLKEM768:X25519:prime256v1:secp384r1;/);
        const result = await nginxTest(config, "debian-13");
        assert.ok(result.ok, result.output);
        // Why the group waits for the platform: Debian 12's NGINX (OpenSSL 3.0) refuses the config.
        const onDebian12 = await nginxTest(config);
        assert.equal(onDebian12.ok, false);
        assert.match(onDebian12.output, /ssl_ecdh_curve|SSL_CTX_set1_curves_list/);
    });

    it("and NGINX itself rejects a broken config, so the check is real", async () => {
        const result = await nginxTest(render({}, localHost).replace("proxy_http_version 1.1;", "proxy_http_version 1.1"));
        assert.equal(result.ok, false);
        assert.match(result.output, /emerg/);
    });
});

describe("nginx -t on what the AWS program and generated settings render", () => {
    it("accepts the config the AWS stack exports (default dev config, under mocks) with real certificates", asRoot, async () => {
        const { outputs } = await runEdgeProgram({});
        const result = await nginxTest(String(outputs.nginxConfig));
        assert.ok(result.ok, result.output);
    });

    const generated = 40;
    it(`accepts the configs of ${generated} generated valid settings objects (seed ${seed})`, async () => {
        const cases = fc.sample(fc.tuple(validSettings, resolvableUpstreams), { numRuns: generated, seed });
        let checked = 0;
        for (const [raw, servers] of cases) {
            const settings = validateSettings(raw);
            const config = renderNginxConfig(edgeConfigSpec(settings, servers, localHost, [settings.domainName ?? "localhost"]));
            // Each on the NGINX of its proxy platform, as the proxy VM runs it.
            const result = await nginxTest(config, settings.proxyPlatform);
            assert.ok(result.ok, `${JSON.stringify(raw)}\n${result.output}`);
            checked++;
        }
        assert.equal(checked, generated, "every generated case went through nginx -t");
    });
});
