/**
 * Debian's Pebble (an RFC 8555 test CA) and its companion DNS server (`pebble-challtestsrv`), on
 * free loopback ports: they stand in for Let's Encrypt and the Route 53 zone, for the local stack,
 * the VM twin and the tests. Pebble validates DNS-01 by asking the companion server, whose records
 * `ChallengeTestServerDns` writes. Pebble's roots are made anew at every start: a client trusts
 * the root of the Pebble that issued the certificate it is shown.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../local/ports";
import { findBinary, terminate, waitUntil } from "../local/processes";
import { selfSignedCertificate } from "../pki/selfSigned";

export interface PebbleCa {
    readonly directoryUrl: string;
    /** The CA of Pebble's own HTTPS listener (not of the certificates it issues). */
    readonly listenerCaPem: string;
    /** The DNS server's management API, for ChallengeTestServerDns. */
    readonly dnsManagementUrl: string;
    /** The root the issued certificates chain to. */
    root(): Promise<string>;
    /** Pebble's and its DNS server's processes, by PID and command. */
    readonly processes: readonly { readonly pid: number; readonly command: string }[];
    /** Stops both; safe to call twice. */
    stop(): Promise<void>;
}

/** Starts Pebble and its DNS server with their files in `dir`; what it issues is valid `certificateValiditySeconds`. If either fails to start, both are stopped. */
export async function startPebble(options: {
    readonly dir: string;
    readonly certificateValiditySeconds: number;
    /** Other builds of the two (Debian 13's, which offer ACME Renewal Information); Debian's installed ones by default. */
    readonly binaries?: { readonly pebble: string; readonly challtestsrv: string };
}): Promise<PebbleCa> {
    const pebble = options.binaries?.pebble ?? findBinary("pebble");
    const challtestsrv = options.binaries?.challtestsrv ?? findBinary("pebble-challtestsrv");
    if (!pebble || !challtestsrv)
        throw new Error("certificate acme here needs Debian's pebble, which stands in for the ACME CA (apt-get install pebble)");
    const { dir } = options;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const children: ChildProcess[] = [];
    const stop = async () => {
        for (const child of children) await terminate(child, "SIGTERM");
    };
    try {
        return await start(dir, pebble, challtestsrv, options.certificateValiditySeconds, children, stop);
    } catch (error) {
        await stop();
        throw error;
    }
}

async function start(
    dir: string,
    pebble: string,
    challtestsrv: string,
    certificateValiditySeconds: number,
    children: ChildProcess[],
    stop: () => Promise<void>,
): Promise<PebbleCa> {
    // Pebble's own HTTPS listener (not what it issues): self-signed, for 127.0.0.1, a year.
    const { certificatePath, keyPath } = selfSignedCertificate(dir, "127.0.0.1", "IP:127.0.0.1", 365);
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
                certificateValidityPeriod: certificateValiditySeconds,
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
        processes: children.map((child) => ({ pid: child.pid ?? 0, command: child.spawnfile })),
        stop,
    };
}
