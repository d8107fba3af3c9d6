// The rendered nginx.conf: what it must say, what it must never say, and that NGINX accepts it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { BenchResults } from "../bench/report";
import type { EdgeConfigSpec } from "../nginx/edgeConfigSpec";
import { RenderError, renderNginxConfig } from "../nginx/renderNginxConfig";
import { mozillaIntermediate } from "../nginx/tlsPolicy";
import { memoryPerSocketKiB, proxySocketCeiling } from "../plan/capacity";
import { defaultConfig, goldenPath } from "./golden/defaultConfig";
import { scratchLocalHost } from "./support/nginxCheck";
import { backends, render, specFor, vmHost } from "./support/renderFixtures";

// `nginx -t` creates the pid file and temp folders, so they must point somewhere real.
const { host: localHost, remove: removeScratch } = scratchLocalHost();
after(removeScratch);

describe("renderNginxConfig", () => {
    const config = render({ idleTimeoutSeconds: "900" });

    it("terminates TLS on 443 for the configured name", () => {
        assert.match(config, /^\s+listen 443 ssl;$/m);
        assert.match(config, /^\s+listen \[::\]:443 ssl;$/m);
        assert.match(config, /^\s+server_name ws\.example\.com;$/m);
    });

    it("allows TLS 1.2 and 1.3 only, with Mozilla intermediate ciphers, a shared session cache and HSTS", () => {
        assert.match(config, /^\s+ssl_protocols TLSv1\.2 TLSv1\.3;$/m);
        assert.doesNotMatch(config, /TLSv1(\.1)?[ ;]/);
        assert.ok(config.includes(`ssl_ciphers ${mozillaIntermediate.tls12Ciphers.join(":")};`));
        assert.match(config, /Mozilla guidelines 6\.0/);
        assert.match(config, /^\s+ssl_session_cache shared:\w+:\d+m;$/m);
        assert.match(config, /add_header Strict-Transport-Security "max-age=63072000" always;/);
    });

    it("upgrades with the $connection_upgrade map, never a hard-coded Connection header", () => {
        assert.match(config, /map \$http_upgrade \$connection_upgrade \{\n\s+default upgrade;\n\s+''\s+close;\n\s+\}/);
        assert.match(config, /proxy_http_version 1\.1;/);
        assert.match(config, /proxy_set_header Upgrade \$http_upgrade;/);
        assert.match(config, /proxy_set_header Connection \$connection_upgrade;/);
        assert.doesNotMatch(config, /Connection "upgrade"/);
    });

    it("passes Host, X-Forwarded-For, X-Forwarded-Proto and X-Real-IP, overwriting what the client sent", () => {
        for (const header of [
            "Host \\$host",
            "X-Forwarded-For \\$remote_addr",
            "X-Forwarded-Proto \\$scheme",
            "X-Real-IP \\$remote_addr",
        ]) {
            assert.match(config, new RegExp(`proxy_set_header ${header};`));
        }
    });

    it("lists every backend in order in an ip_hash upstream with failure accounting", () => {
        const upstream = /upstream wss_backends \{([\s\S]*?)\n\s+\}/.exec(config)![1];
        assert.match(upstream, /^\s+ip_hash;$/m);
        assert.deepEqual(
            [...upstream.matchAll(/server (\S+) max_fails=3 fail_timeout=10s;/g)].map((m) => m[1]),
            ["10.0.1.21:8443", "10.0.2.22:8443", "10.0.3.23:8443"],
        );
        assert.match(config, /proxy_next_upstream error timeout http_502 http_503;/);
    });

    it("keeps the upstream out of shared memory, and retries a full backend's 503 on the next (docs/engine-rules.md, k and l)", () => {
        const upstream = /upstream wss_backends \{([\s\S]*?)\n\s+\}/.exec(config)![1];
        // A zone would give every upstream connection its own copy of the backend's TLS session.
        assert.doesNotMatch(upstream, /\bzone\b/);
        assert.doesNotMatch(upstream, /max_conns/);
        assert.match(config, /proxy_next_upstream [^;]*\bhttp_503\b/);
        assert.match(config, /proxy_next_upstream_tries 3;/);
    });

    it("sizes read and send timeouts from the idle timeout setting", () => {
        assert.match(config, /proxy_read_timeout 900s;/);
        assert.match(config, /proxy_send_timeout 900s;/);
    });

    it("re-encrypts to the backends, verifying them against the CA by name, and presents the client certificate", () => {
        for (const directive of [
            "proxy_pass https://wss_backends;",
            "proxy_ssl_verify on;",
            "proxy_ssl_trusted_certificate tls/backend-ca.crt;",
            "proxy_ssl_name backends.wss-edge.internal;",
            "proxy_ssl_server_name on;",
            "proxy_ssl_certificate tls/proxy-client.crt;",
            "proxy_ssl_certificate_key tls/proxy-client.key;",
        ]) {
            assert.ok(config.includes(directive), directive);
        }
    });

    it("speaks TLS 1.2 to the backends by default, with ECDHE-ECDSA AEAD suites only, resuming sessions", () => {
        assert.match(config, /^\s+proxy_ssl_protocols TLSv1\.2;$/m);
        assert.match(
            config,
            /^\s+proxy_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;$/m,
        );
        assert.match(config, /^\s+proxy_ssl_session_reuse on;$/m);
    });

    it("speaks only TLS 1.3 to the backends when asked, with no TLS 1.2 cipher list", () => {
        const text = render({ backendTlsProtocol: "TLSv1.3" });
        assert.match(text, /^\s+proxy_ssl_protocols TLSv1\.3;$/m);
        assert.doesNotMatch(text, /proxy_ssl_ciphers/);
    });

    it("answers /healthz itself and bounds worker shutdown", () => {
        assert.match(config, /location = \/healthz \{[\s\S]*?return 200 "ok\\n";/);
        assert.match(config, /^worker_shutdown_timeout 3600s;$/m);
    });

    it("admits on a c6i.large what its 4 GiB hold, 38,550 sockets, and answers 503 beyond; any one worker may hold them all", () => {
        assert.match(config, /^worker_processes 2;$/m);
        assert.match(config, /^\s+limit_conn_zone \$server_port zone=edge_sockets:1m;$/m);
        assert.match(config, /^\s+limit_conn edge_sockets 38550;$/m);
        assert.match(config, /^\s+worker_connections 78124;$/m, "two connections per socket, plus room for those refused");
        assert.match(config, /^worker_rlimit_nofile 79148;$/m);
        assert.doesNotMatch(render({}, localHost), /edge_sockets/, "the local stack has no memory budget of a VM");
    });

    it("counts a ceiling above NGINX's 65,535 per key on 10 or 100 keys, by the last digits of the connection serial", () => {
        const ceiling = (maxSockets: string) => renderNginxConfig(specFor({ maxSockets }, localHost));
        assert.match(ceiling("65535"), /limit_conn_zone \$server_port zone=edge_sockets:1m;[\s\S]*limit_conn edge_sockets 65535;/);
        assert.match(
            ceiling("90112"),
            /map \$connection \$edge_socket_bucket \{\n\s+default 0;\n\s+~\(\[0-9\]\)\$ \$1;\n\s+\}\n\s+limit_conn_zone \$edge_socket_bucket zone=edge_sockets:1m;[\s\S]*limit_conn edge_sockets 9012;/,
        );
        assert.match(ceiling("1000000"), /~\(\[0-9\]\[0-9\]\)\$ \$1;[\s\S]*limit_conn edge_sockets 10000;/);
    });

    it("sizes the socket ceiling from memory, bounded by the ports towards the backends and the VM's descriptors", () => {
        const ceiling = (memoryMiB: number, backendCount = 3) => proxySocketCeiling({ memoryMiB, vcpus: 2, backendCount });
        assert.equal(ceiling(2048), 15420);
        assert.equal(ceiling(4096), 38550);
        assert.equal(ceiling(8192), 84811);
        assert.equal(ceiling(16384), 177332);
        assert.equal(ceiling(65536), 180000, "60,000 ports to each of 3 backends");
        assert.equal(ceiling(262144, 20), 490000, "half of fs.file-max, less a margin");
        assert.equal(ceiling(512), 1000, "never below 1,000");
        const withTunnel = (tunnelBufferKiB: number) => proxySocketCeiling({ memoryMiB: 4096, vcpus: 2, backendCount: 3, tunnelBufferKiB });
        assert.ok(withTunnel(1) > withTunnel(4) && withTunnel(4) > withTunnel(16), "smaller tunnel buffers, more sockets per GiB");
        assert.equal(withTunnel(4), ceiling(4096), "the default is what the measured figure holds");
    });

    it("charges each socket at least what the committed full benchmark measured, and not far above it", () => {
        // bench/results/latest.json: the scale step and the proxies' holding steps at the default
        // tunnel buffers, and the tunnelBufferKiB sweep; steps under 5,000 sockets are mostly baseline.
        const latest = JSON.parse(readFileSync(join(__dirname, "../bench/results/latest.json"), "utf8")) as BenchResults;
        assert.equal(latest.plan, "full");
        const atDefault = [
            ...(latest.scale?.steps ?? []),
            ...(latest.results.find((r) => r.name === "wss-edge")?.holding ?? []).map((h) => ({ ...h, kibPerSocket: h.kibPerSocket ?? 0 })),
        ].filter((step) => step.sockets >= 5000);
        const swept = (latest.tunnelBuffers ?? []).filter((row) => row.sockets >= 5000);
        assert.ok(atDefault.length >= 4 && swept.length >= 3, "the full run has the scale step and the sweep");
        for (const step of atDefault)
            assert.ok(memoryPerSocketKiB() >= step.kibPerSocket, `${step.kibPerSocket.toFixed(1)} KiB measured at ${step.sockets} sockets`);
        for (const row of swept)
            assert.ok(
                memoryPerSocketKiB(row.bufferKiB) >= row.kibPerSocket,
                `${row.kibPerSocket.toFixed(1)} KiB measured with tunnelBufferKiB ${row.bufferKiB}`,
            );
        const largest = Math.max(...atDefault.map((step) => step.kibPerSocket));
        assert.ok(memoryPerSocketKiB() <= largest * 1.05, `${memoryPerSocketKiB()} KiB charged against ${largest.toFixed(1)} measured`);
    });

    it("charges Debian 13's socket at least what its committed heap profile measured, with room for the hybrid group's few KiB more", () => {
        const profile = readFileSync(join(__dirname, "../bench/results/nginx-heap-proxyPlatform-debian-13.md"), "utf8");
        const measured = Number(/\*\*Total\*\* \| \*\*([\d.]+)\*\*/.exec(profile)?.[1]);
        assert.ok(measured > 70, `read ${measured} KiB from the profile`);
        // X25519MLKEM768 keeps about 6.4 KiB more per socket than X25519 (docs/benchmark.md).
        assert.ok(
            memoryPerSocketKiB(undefined, "debian-13") >= measured + 6.4,
            `${memoryPerSocketKiB(undefined, "debian-13")} KiB charged against ${measured} measured`,
        );
        assert.ok(memoryPerSocketKiB(undefined, "debian-13") > memoryPerSocketKiB(), "more than Debian 12's");
    });

    it("refuses handshakes for unknown names in a default server when the edge has DNS names", () => {
        const reject =
            /server \{\n\s+listen 443 ssl default_server reuseport;\n\s+listen \[::\]:443 ssl default_server reuseport;\n\s+ssl_reject_handshake on;\n\s+return 421;\n\s+\}/;
        assert.match(config, reject);
        assert.equal(config.match(/reuseport/g)!.length, 2, "reuseport once per address:port");
        const byAddress = renderNginxConfig(specFor({}, vmHost, backends, ["198.51.100.7"]));
        assert.doesNotMatch(byAddress, /ssl_reject_handshake/, "clients that dial an IP send no SNI");
        assert.match(byAddress, /listen 443 ssl default_server reuseport;\n[\s\S]*server_name 198\.51\.100\.7;/);
    });

    it("renders the default stack's config exactly as reviewed in test/golden/default.nginx.conf (after an intended change: npm run golden:update)", () => {
        assert.equal(defaultConfig(), readFileSync(goldenPath, "utf8"));
    });

    it("guards the comments it writes too: a newline in a policy's name or deviation cannot start a directive", () => {
        const spec = specFor();
        for (const [field, policy] of [
            ["tls.policy.name", { ...spec.tls.policy, name: "mine\nuser root;" }],
            ["tls.policy.deviations[1]", { ...spec.tls.policy, deviations: ["fine", "also fine\r\nssl_protocols SSLv3;"] }],
            ["tls.policy.guidelinesVersion", { ...spec.tls.policy, guidelinesVersion: "6.0\u2028x" }],
        ] as const) {
            assert.throws(
                () => renderNginxConfig({ ...spec, tls: { ...spec.tls, policy: policy } }),
                (error: Error) => error instanceof RenderError && error.field === field,
            );
        }
    });

    it("writes IPv6 backends in brackets", () => {
        const text = renderNginxConfig(specFor({}, vmHost, [{ address: "2001:db8::21", port: 8443 }]));
        assert.match(text, /server \[2001:db8::21\]:8443 max_fails/);
    });

    it("listens on a given IPv6 address beside the IPv4 one (the local stack's ::1), on the TLS and redirect ports, and refuses an IPv4 one there", () => {
        const base = specFor({ httpRedirect: "true" });
        const spec: EdgeConfigSpec = { ...base, listen: { ...base.listen, address: "127.0.0.1", ipv6: false, ipv6Address: "::1" } };
        const text = renderNginxConfig(spec);
        assert.match(
            text,
            new RegExp(
                `^\\s+listen 127\\.0\\.0\\.1:${spec.listen.port} ssl default_server reuseport;\\n\\s+listen \\[::1\\]:${spec.listen.port} ssl default_server reuseport;$`,
                "m",
            ),
        );
        assert.match(text, new RegExp(`^\\s+listen \\[::1\\]:${spec.httpRedirectPort};$`, "m"));
        assert.throws(
            () => renderNginxConfig({ ...spec, listen: { ...spec.listen, ipv6Address: "127.0.0.2" } }),
            (error: RenderError) => error.field === "listen.ipv6Address",
        );
    });

    it("writes no cipher list for the TLS 1.3-only policy", () => {
        const text = render({ tlsPolicy: "mozilla-modern" });
        assert.match(text, /^\s+ssl_protocols TLSv1\.3;$/m);
        assert.doesNotMatch(text, /^\s+ssl_ciphers/m);
    });

    it("refuses any value that would inject NGINX syntax, naming the field", () => {
        const base = specFor();
        const attempts: [string, EdgeConfigSpec][] = [
            ["serverNames", { ...base, serverNames: ["ws.example.com; return 200"] }],
            [
                "upstream.servers[1].address",
                { ...base, upstream: { ...base.upstream, servers: [backends[0], { address: "10.0.0.1 down", port: 1 }] } },
            ],
            ["tls.certificate", { ...base, tls: { ...base.tls, certificate: "tls/edge.crt;\nssl_verify off" } }],
            ["timeouts.idleSeconds", { ...base, timeouts: { ...base.timeouts, idleSeconds: 1.5 } }],
            ["backendTls.serverName", { ...base, backendTls: { ...base.backendTls, serverName: "$host" } }],
            ["backendTls.protocol", { ...base, backendTls: { ...base.backendTls, protocol: "TLSv1.2 TLSv1.1" as "TLSv1.2" } }],
            ["paths.accessLog", { ...base, paths: { ...base.paths, accessLog: "/var/log/../../etc/passwd" } }],
        ];
        for (const [field, spec] of attempts) {
            assert.throws(
                () => renderNginxConfig(spec),
                (e: Error) => e instanceof RenderError && e.field === field,
                field,
            );
        }
    });
});

describe("the client's address", () => {
    it("is the TCP peer unless the edge is behind a load balancer: no PROXY protocol, nothing believed from headers", () => {
        const config = render();
        assert.doesNotMatch(config, /proxy_protocol|set_real_ip_from|real_ip_header/);
    });

    it("is believed from a PROXY protocol header only from the given ranges, and a malformed range is refused", () => {
        const behind = (from: string[]) => ({ ...vmHost, listen: { ...vmHost.listen, proxyProtocolFrom: from } });
        assert.throws(() => renderNginxConfig(specFor({}, behind(["10.0.0.1/16"]))), RenderError);
        assert.throws(() => renderNginxConfig(specFor({}, behind(["10.0.0.0/16; allow all"]))), RenderError);
        assert.throws(() => renderNginxConfig(specFor({}, behind([]))), RenderError);
        assert.equal((renderNginxConfig(specFor({}, behind(["172.31.0.0/16"]))).match(/set_real_ip_from/g) ?? []).length, 1);
    });
});
