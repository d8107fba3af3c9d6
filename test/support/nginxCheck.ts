import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { nginxProgram } from "../../local/platformNginx";
import type { EdgeHostProfile } from "../../nginx/edgeConfigFromSettings";
import { issueWithOpenSsl, type LocalPki } from "../../pki/openSslIssuer";
import { edgePkiSpec } from "../../pki/pkiSpec";
import { releaseOf } from "../../plan/edgePlan";
import type { ProxyPlatform } from "../../settings/settingsTable";

const run = promisify(execFile);
let pki: Promise<{ dir: string; pki: LocalPki }> | undefined;

/** One real PKI per test process, issued by openssl, for configs that `nginx -t` loads. */
export function testPki(): Promise<{ dir: string; pki: LocalPki }> {
    pki ??= (async () => {
        const dir = await mkdtemp(join(tmpdir(), "wss-edge-pki-"));
        const spec = edgePkiSpec({
            edgeDnsNames: ["localhost"],
            edgeIpAddresses: ["127.0.0.1"],
            backendCount: 3,
            userSuppliedEdgeCertificate: false,
        });
        return { dir, pki: await issueWithOpenSsl(spec, dir) };
    })();
    return pki;
}

export async function removeTestPki(): Promise<void> {
    if (pki) await rm((await pki).dir, { recursive: true, force: true });
    pki = undefined;
}

/** The release layout the deploy script creates: nginx.conf beside tls/. */
export async function writeRelease(dir: string, config: string): Promise<string> {
    const { pki: issued } = await testPki();
    const files = releaseOf({ nginxConfig: config, healthAgent: true, platform: "debian-12" }, issued);
    for (const [path, content] of Object.entries(files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true });
        await writeFile(join(dir, path), content);
    }
    return join(dir, "nginx.conf");
}

/** Runs the proxy platform's `nginx -t` (Debian 12's by default) on `config` with real certificates; returns NGINX's verdict. */
export async function nginxTest(config: string, platform: ProxyPlatform = "debian-12"): Promise<{ ok: boolean; output: string }> {
    const dir = await mkdtemp(join(tmpdir(), "wss-edge-release-"));
    try {
        const path = await writeRelease(dir, config);
        try {
            const nginx = nginxProgram(platform);
            const { stderr } = await run(nginx.path, [...nginx.args, "-t", "-c", path]);
            return { ok: true, output: stderr };
        } catch (error) {
            return { ok: false, output: String((error as { stderr?: string }).stderr ?? error) };
        }
    } finally {
        await rm(dir, { recursive: true, force: true });
    }
}

export const isRoot = process.getuid?.() === 0;

/**
 * A local-stack host profile whose pid file and temp folders point into a scratch folder
 * (`nginx -t` creates both), and the function that removes it.
 */
export function scratchLocalHost(): { host: EdgeHostProfile; remove: () => void } {
    const scratch = mkdtempSync(join(tmpdir(), "wss-edge-host-"));
    mkdirSync(join(scratch, "tmp"));
    return {
        host: {
            listen: { port: 18443, address: "127.0.0.1", ipv6: false },
            workers: { processes: 2, connections: 4096, fileLimit: 8192 },
            paths: { pidFile: join(scratch, "nginx.pid"), errorLog: "stderr", accessLog: "off", tempDir: join(scratch, "tmp") },
        },
        remove: () => rmSync(scratch, { recursive: true, force: true }),
    };
}
