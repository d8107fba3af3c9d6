// backend/upstreamHash.mjs predicts which server of an NGINX upstream a client lands on; here the
// real NGINX decides, for `hash $arg_key consistent;`, `hash $binary_remote_addr consistent;` and
// `ip_hash;` upstreams of 3, 4 and 5 servers, and every answer must be the predicted one. Source
// addresses vary over 127.0.0.0/8 (all of it is loopback); a second listener, an IPv6 socket bound
// to ::ffff:127.0.0.1, sees the same clients as IPv4-mapped IPv6 addresses, which NGINX hashes
// on all 16 bytes.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, createServer, request, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { crc32 } from "node:zlib";
import { freePort, waitForPort } from "../local/ports";
import { findBinary, terminate } from "../local/processes";

const sizes = [3, 4, 5];
const backendCount = Math.max(...sizes);
const keysPerSize = 1500; // an extra or missing point per server moves ~1 key in 400: catch that too
const addressesPerSize = 200;
const mappedAddressesPerSize = 100;
const concurrency = 32;
const nginx = findBinary("nginx");

type Answer = { index: number; remote: string };

/** backend/upstreamHash.mjs: plain JavaScript without declarations, so imported by path and typed here. */
type UpstreamHash = {
    ipHashIndex(address: string, serverCount: number): number;
    consistentHashIndex(key: Buffer | string, servers: string[]): number;
    binaryAddress(address: string): Buffer;
};
const moduleUrl = pathToFileURL(join(__dirname, "..", "backend", "upstreamHash.mjs")).href;
let ipHashIndex: UpstreamHash["ipHashIndex"];
let consistentHashIndex: UpstreamHash["consistentHashIndex"];
let binaryAddress: UpstreamHash["binaryAddress"];

/** A backend that answers every request with its index and the client address NGINX passed on. */
function startBackend(index: number, port: number): Promise<Server> {
    const server = createServer((req, res) => {
        res.setHeader("connection", "close");
        res.end(JSON.stringify({ index, remote: req.headers["x-remote-addr"] }));
    });
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve(server));
    });
}

function upstreams(servers: string[]): string {
    return sizes
        .flatMap((n) => {
            const list = servers
                .slice(0, n)
                .map((s) => `server ${s};`)
                .join(" ");
            return [
                `upstream key${n} { hash $arg_key consistent; ${list} }`,
                `upstream addr${n} { hash $binary_remote_addr consistent; ${list} }`,
                `upstream ip${n} { ip_hash; ${list} }`,
            ];
        })
        .join("\n    ");
}

function locations(): string {
    return sizes
        .flatMap((n) => ["key", "addr", "ip"].map((kind) => `location /${kind}${n} { proxy_pass http://${kind}${n}; }`))
        .join("\n        ");
}

function nginxConfig(dir: string, port: number, mappedPort: number, servers: string[]): string {
    return `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    proxy_next_upstream off;
    proxy_set_header X-Remote-Addr $remote_addr;
    ${upstreams(servers)}
    server {
        listen 127.0.0.1:${port};
        ${locations()}
    }
    server {
        listen [::ffff:127.0.0.1]:${mappedPort} ipv6only=off;
        ${locations()}
    }
}
`;
}

/** Connections kept open for the key requests, where the client's address does not matter. */
const keepAlive = new Agent({ keepAlive: true, maxSockets: concurrency });

/** GET `path` from 127.0.0.1:`port`, on a connection of its own from `localAddress` if given. */
function get(port: number, path: string, localAddress?: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
        const agent = localAddress ? false : keepAlive;
        const req = request({ host: "127.0.0.1", port, path, localAddress, agent, timeout: 5000 }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d) => (body += d));
            res.on("end", () =>
                res.statusCode === 200
                    ? resolve(JSON.parse(body) as Answer)
                    : reject(new Error(`GET ${path} from ${localAddress}: ${res.statusCode} ${body}`)),
            );
            res.on("error", reject);
        });
        req.on("timeout", () => req.destroy(new Error(`GET ${path} from ${localAddress} timed out`)));
        req.on("error", reject);
        req.end();
    });
}

/** Runs `work` on every item, `concurrency` at a time. */
async function pool<T, R>(items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
    const results = new Array<R>(items.length);
    let next = 0;
    const worker = async () => {
        while (next < items.length) {
            const i = next++;
            results[i] = await work(items[i]);
        }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
    return results;
}

const randomInt = (below: number) => Math.floor(Math.random() * below);
const unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

/** A query-string value as sent, which is what `$arg_key` holds (NGINX does not decode it). */
function randomKey(): string {
    const length = 1 + randomInt(randomInt(3) === 0 ? 200 : 24);
    let key = "";
    for (let i = 0; i < length; i++) {
        const r = randomInt(20);
        if (r === 0) key += `%${randomInt(256).toString(16).toUpperCase().padStart(2, "0")}`;
        else if (r === 1) key += "+";
        else key += unreserved[randomInt(unreserved.length)];
    }
    return key;
}

/**
 * Keys whose CRC-32 lies in the top or bottom 1/4096 of the range: above the highest point of the
 * continuum (wrapping to its first point) or below the lowest, most of the time.
 */
function edgeKeys(count: number): string[] {
    const keys: string[] = [];
    for (let tries = 0; keys.length < count && tries < 1_000_000; tries++) {
        const key = `edge-${randomInt(1e12)}`;
        const hash = crc32(key);
        if ((keys.length % 2 === 0 && hash >= 0xfff00000) || (keys.length % 2 === 1 && hash < 0x00100000)) keys.push(key);
    }
    assert.equal(keys.length, count, "could not find keys hashing to the ends of the range");
    return keys;
}

/** `count` distinct addresses in 127.0.0.0/8 (not 127.0.0.0 or broadcast-looking ones), optionally each in a /24 of its own. */
function sourceAddresses(count: number, distinctSlash24: boolean): string[] {
    const seen = new Set<string>();
    const addresses: string[] = [];
    for (let tries = 0; addresses.length < count && tries < 100_000; tries++) {
        const [b, c, d] = [randomInt(256), randomInt(256), 1 + randomInt(254)];
        const id = distinctSlash24 ? `${b}.${c}` : `${b}.${c}.${d}`;
        if (seen.has(id)) continue;
        seen.add(id);
        addresses.push(`127.${b}.${c}.${d}`);
    }
    assert.equal(addresses.length, count);
    return addresses;
}

function assertEveryServerUsed(indexes: number[], n: number, what: string): void {
    for (let i = 0; i < n; i++) assert.ok(indexes.includes(i), `${what}: server ${i} of ${n} never chosen, a degenerate test`);
}

describe("backend/upstreamHash.mjs against NGINX", { skip: nginx ? false : "no nginx binary" }, () => {
    let dir = "";
    const backends: Server[] = [];
    let master: ChildProcess | undefined;
    let stderr = "";
    let servers: string[] = [];
    let port = 0;
    let mappedPort = 0;

    before(async () => {
        ({ ipHashIndex, consistentHashIndex, binaryAddress } = (await import(moduleUrl)) as UpstreamHash);
        dir = mkdtempSync(join(tmpdir(), "wss-edge-upstream-hash-"));
        const ports = [];
        for (let i = 0; i < backendCount; i++) ports.push(await freePort("127.0.0.1"));
        for (const [i, p] of ports.entries()) backends.push(await startBackend(i, p));
        servers = ports.map((p) => `127.0.0.1:${p}`);
        port = await freePort("127.0.0.1");
        mappedPort = await freePort("127.0.0.1");
        const config = join(dir, "nginx.conf");
        writeFileSync(config, nginxConfig(dir, port, mappedPort, servers));
        master = spawn(nginx!, ["-p", dir, "-c", config, "-e", join(dir, "error.log")], { stdio: ["ignore", "ignore", "pipe"] });
        master.stderr!.on("data", (d) => (stderr += d));
        const exited = new Promise<never>((_, reject) =>
            master!.once("exit", (code) => reject(new Error(`nginx exited (${code}): ${stderr}`))),
        );
        exited.catch(() => undefined);
        await Promise.race([Promise.all([waitForPort("127.0.0.1", port, 5000), waitForPort("127.0.0.1", mappedPort, 5000)]), exited]);
    });

    after(async () => {
        keepAlive.destroy();
        if (master) await terminate(master, "SIGTERM", 3000);
        await Promise.all(backends.map((b) => new Promise((done) => b.close(done))));
        if (dir) rmSync(dir, { recursive: true, force: true });
    });

    for (const n of sizes) {
        it(`hash $arg_key consistent, ${n} servers: ${keysPerSize} random keys and 20 at the ends of the ring`, async () => {
            const list = servers.slice(0, n);
            const keys = [...Array.from({ length: keysPerSize }, randomKey), ...edgeKeys(20)];
            const answers = await pool(keys, (key) => get(port, `/key${n}?key=${key}`));
            for (const [i, key] of keys.entries())
                assert.equal(answers[i].index, consistentHashIndex(key, list), `key ${JSON.stringify(key)}`);
            assertEveryServerUsed(
                answers.map((a) => a.index),
                n,
                "keys",
            );
        });

        it(`hash $binary_remote_addr consistent, ${n} servers: ${addressesPerSize} IPv4 and ${mappedAddressesPerSize} IPv4-mapped IPv6 clients`, async () => {
            const list = servers.slice(0, n);
            const v4 = sourceAddresses(addressesPerSize, false);
            const answers = await pool(v4, (address) => get(port, `/addr${n}`, address));
            v4.forEach((address, i) => {
                assert.equal(answers[i].remote, address);
                assert.equal(answers[i].index, consistentHashIndex(binaryAddress(address), list), `client ${address}`);
            });
            assertEveryServerUsed(
                answers.map((a) => a.index),
                n,
                "IPv4 clients",
            );

            const mapped = sourceAddresses(mappedAddressesPerSize, false);
            const mappedAnswers = await pool(mapped, (address) => get(mappedPort, `/addr${n}`, address));
            mapped.forEach((address, i) => {
                const remote = mappedAnswers[i].remote;
                assert.equal(remote, `::ffff:${address}`);
                assert.equal(binaryAddress(remote).length, 16);
                assert.equal(mappedAnswers[i].index, consistentHashIndex(binaryAddress(remote), list), `client ${remote}`);
            });
        });

        it(`ip_hash, ${n} servers: ${addressesPerSize} IPv4 clients in distinct /24s and ${mappedAddressesPerSize} IPv4-mapped IPv6 ones`, async () => {
            const v4 = sourceAddresses(addressesPerSize, true);
            const answers = await pool(v4, (address) => get(port, `/ip${n}`, address));
            v4.forEach((address, i) => {
                assert.equal(answers[i].remote, address);
                assert.equal(answers[i].index, ipHashIndex(address, n), `client ${address}`);
            });
            assertEveryServerUsed(
                answers.map((a) => a.index),
                n,
                "IPv4 clients",
            );

            const mapped = sourceAddresses(mappedAddressesPerSize, false);
            const mappedAnswers = await pool(mapped, (address) => get(mappedPort, `/ip${n}`, address));
            mapped.forEach((address, i) => {
                const remote = mappedAnswers[i].remote;
                assert.equal(remote, `::ffff:${address}`);
                assert.equal(mappedAnswers[i].index, ipHashIndex(remote, n), `client ${remote}`);
            });
        });
    }
});
