// A TLS audit of the live local edge with sslscan (Debian's package). Its XML report is kept in
// test-results/tls-audit.xml for anyone who wants to read the whole scan.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { opensslOf } from "../local/platformNginx";
import { getFromEdge, startTestEdge } from "./support/localEdge";

const run = promisify(execFile);
const reportPath = join(__dirname, "..", "test-results", "tls-audit.xml");

describe("TLS audit of the edge", async () => {
    const stack = await startTestEdge({ settings: { backendCount: "1" } });
    mkdirSync(join(reportPath, ".."), { recursive: true });
    const { host, port } = stack.edgeAddress;
    await run("sslscan", ["--no-colour", "--sni-name=localhost", `--xml=${reportPath}`, `${host}:${port}`], { timeout: 120000 });
    const report = readFileSync(reportPath, "utf8");
    const protocols = [...report.matchAll(/<protocol type="(\w+)" version="([\d.]+)" enabled="(\d)"/g)].map((m) => ({
        name: `${m[1]}${m[2]}`,
        enabled: m[3] === "1",
    }));
    const ciphers = [...report.matchAll(/<cipher status="(?:accepted|preferred)" sslversion="([^"]+)" bits="\d+" cipher="([^"]+)"/g)].map(
        (m) => ({ version: m[1], name: m[2] }),
    );

    it("offers TLS 1.2 and 1.3 only", () => {
        assert.deepEqual(
            protocols.filter((p) => p.enabled).map((p) => p.name),
            ["tls1.2", "tls1.3"],
        );
        assert.ok(
            protocols.some((p) => p.name === "tls1.0" && !p.enabled) && protocols.some((p) => p.name === "tls1.1" && !p.enabled),
            "TLS 1.0 and 1.1 were probed and refused",
        );
    });

    it("has forward secrecy on every suite and no CBC, RSA key exchange, or export-grade suite", () => {
        assert.ok(ciphers.length >= 4, `sslscan found ${ciphers.length} suites`);
        for (const { version, name } of ciphers) {
            assert.ok(version === "TLSv1.3" || name.startsWith("ECDHE-"), `${name} (${version}) lacks forward secrecy`);
            assert.match(name, /GCM|CHACHA20/, `${name} is not an AEAD suite`);
            assert.doesNotMatch(name, /CBC|SHA1$|RC4|3DES|EXP|NULL|anon/i, name);
        }
    });

    it("is not vulnerable to heartbleed and refuses client-initiated renegotiation", () => {
        // The evidence itself: a heartbleed result per protocol the edge speaks, each "0". A scan
        // that skipped the check would have none, and fail here.
        const heartbleed = [...report.matchAll(/<heartbleed sslversion="([^"]+)" vulnerable="(\d)"/g)].map((m) => [m[1], m[2]]);
        assert.deepEqual(heartbleed.map(([version]) => version).sort(), ["TLSv1.2", "TLSv1.3"]);
        assert.ok(
            heartbleed.every(([, vulnerable]) => vulnerable === "0"),
            JSON.stringify(heartbleed),
        );
        assert.match(report, /<renegotiation supported="0"/);
    });

    it("sends HSTS on its responses", async () => {
        const hsts = (await getFromEdge(stack, "/healthz"))?.headers["strict-transport-security"];
        assert.match(hsts ?? "", /^max-age=\d{8,}/);
    });
});

describe("post-quantum key exchange on Debian 13 (proxyPlatform debian-13)", async () => {
    const stack = await startTestEdge({ settings: { backendCount: "1", proxyPlatform: "debian-13" } });
    const { host, port } = stack.edgeAddress;
    const handshake = async (openssl: string, groups?: string) => {
        const { stdout } = await run(
            "sh",
            [
                "-c",
                `echo Q | "$0" s_client -connect "$1" -servername localhost -CAfile "$2" -verify_return_error ${groups ? `-groups ${groups}` : ""} 2>&1`,
                openssl,
                `${host}:${port}`,
                stack.caCertificatePath,
            ],
            { timeout: 30000 },
        );
        return stdout;
    };

    it("negotiates X25519MLKEM768 with a client that offers it, as current browsers do (Debian 13's openssl, its default groups)", async () => {
        const output = await handshake(opensslOf("debian-13", join(stack.stateDir, "bin")));
        assert.match(output, /Verify return code: 0 \(ok\)/);
        assert.match(output, /Negotiated TLS1\.3 group: X25519MLKEM768/);
    });

    it("still serves a client without it on X25519 (Debian 12's openssl)", async () => {
        const output = await handshake("openssl");
        assert.match(output, /Verify return code: 0 \(ok\)/);
        assert.match(output, /Server Temp Key: X25519, 253 bits/);
    });

    it("serves the edge's sockets from NGINX 1.26", async () => {
        const master = stack.nginxMasterPid();
        assert.ok(master);
        assert.match(readFileSync(`/proc/${master}/cmdline`, "utf8"), /^nginx: master process \S*trixie\S*\/nginx/);
        const hsts = (await getFromEdge(stack, "/healthz"))?.headers["strict-transport-security"];
        assert.match(hsts ?? "", /^max-age=\d{8,}/);
    });
});
