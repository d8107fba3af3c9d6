/**
 * Debian's Pebble (an RFC 8555 test CA) and its companion DNS server, started for a test on free
 * loopback ports and stopped when the test file ends, whatever its outcome. They stand in for
 * Let's Encrypt and the hosted zone: Pebble validates DNS-01 by asking the companion server,
 * whose records the test's `Dns01` writes. Pebble's roots are made anew at every start.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { freePort } from "../../local/ports";
import { findBinary, terminate, waitUntil } from "../../local/processes";
import { selfSignedCertificate } from "./selfSigned";

export interface PebbleCa {
    readonly directoryUrl: string;
    /** The CA of Pebble's own HTTPS listener (not of the certificates it issues). */
    readonly listenerCaPem: string;
    /** The DNS server's management API, for ChallengeTestServerDns. */
    readonly dnsManagementUrl: string;
    /** The root the issued certificates chain to. */
    root(): Promise<string>;
}

export async function startPebble(options: { readonly certificateValiditySeconds: number }): Promise<PebbleCa> {
    const pebble = findBinary("pebble");
    const challtestsrv = findBinary("pebble-challtestsrv");
    if (!pebble || !challtestsrv) throw new Error("the ACME tests need Debian's pebble (apt-get install pebble)");
    const dir = mkdtempSync(join(tmpdir(), "wss-edge-pebble-"));
    const children: ChildProcess[] = [];
    after(async () => {
        for (const child of children) await terminate(child, "SIGTERM");
        rmSync(dir, { recursive: true, force: true });
    });
    const { certificatePath, keyPath } = selfSignedCertificate(dir, "127.0.0.1", "IP:127.0.0.1");
    const [acmePort, managementPort, dnsPort, dnsManagementPort] = [
        await freePort("127.0.0.1"),
        await freePort("127.0.0.1"),
        await freePort("127.0.0.1"),
        await freePort("127.0.0.1"),
    ];
    writeFileSync(
        join(dir, "pebble.json"),
        JSON.stringify({
            pebble: {
                listenAddress: `127.0.0.1:${acmePort}`,
                managementListenAddress: `127.0.0.1:${managementPort}`,
                certificate: certificatePath,
                privateKey: keyPath,
                // Unused: DNS-01 only; Pebble still wants the fields.
                httpPort: 5002,
                tlsPort: 5001,
                ocspResponderURL: "",
                externalAccountBindingRequired: false,
                certificateValidityPeriod: options.certificateValiditySeconds,
            },
        }),
    );
    children.push(
        spawn(
            challtestsrv,
            [
                "-dns01",
                `127.0.0.1:${dnsPort}`,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                `127.0.0.1:${dnsManagementPort}`,
            ],
            {
                stdio: ["ignore", "ignore", "inherit"],
            },
        ),
    );
    children.push(
        spawn(pebble, ["-config", join(dir, "pebble.json"), "-dnsserver", `127.0.0.1:${dnsPort}`], {
            stdio: ["ignore", "ignore", "inherit"],
            // No random sleeps before validation, and no rejected nonces: the test measures the client, not Pebble's chaos.
            env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
        }),
    );
    const listenerCaPem = readFileSync(certificatePath, "utf8");
    const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
    const managementUrl = `https://127.0.0.1:${managementPort}`;
    const get = async (url: string) => {
        const { Agent, get: httpsGet } = await import("node:https");
        return new Promise<string>((resolve, reject) => {
            httpsGet(url, { agent: new Agent({ ca: listenerCaPem }), timeout: 2000 }, (response) => {
                let body = "";
                response.on("data", (chunk) => (body += chunk));
                response.on("end", () =>
                    response.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${response.statusCode}`)),
                );
            })
                .on("timeout", function (this: import("node:http").ClientRequest) {
                    this.destroy(new Error(`${url}: no answer in 2 s`));
                })
                .on("error", reject);
        });
    };
    let failed: Error | undefined;
    for (const child of children) {
        child.on("error", (error) => (failed = error));
        child.on("exit", (code, signal) => (failed ??= new Error(`${child.spawnfile} exited at start (${signal ?? code})`)));
    }
    const up = async (probe: () => Promise<boolean>) => {
        if (failed) throw failed;
        return probe();
    };
    await waitUntil(10_000, () => up(async () => (await get(directoryUrl).catch(() => "")) !== ""), "pebble did not answer its directory");
    await waitUntil(
        10_000,
        () =>
            up(() =>
                fetch(`http://127.0.0.1:${dnsManagementPort}/`).then(
                    () => true,
                    () => false,
                ),
            ),
        "pebble-challtestsrv did not answer",
    );
    return {
        directoryUrl,
        listenerCaPem,
        dnsManagementUrl: `http://127.0.0.1:${dnsManagementPort}`,
        root: () => get(`${managementUrl}/roots/0`),
    };
}
