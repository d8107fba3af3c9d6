// Affinity cookies in a real browser: Debian's Chromium, headless, driven over the DevTools
// protocol by puppeteer-core (which downloads nothing). It loads a page from the edge, opens
// WebSockets from it, and we read back what it stored.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import puppeteer, { type Browser } from "puppeteer-core";
import type { LocalStack } from "../local/localStack";
import { startTestEdge } from "./support/localEdge";
import { requiring, unlessInstalled } from "./support/requirements";

const chromium = "/usr/bin/chromium";
const chromiumInstalled = requiring(unlessInstalled({ [chromium]: "chromium" }));

/** Trusts the edge's certificate alone (by its public key), as a browser trusts a public CA's. */
function spkiHash(certificatePem: string): string {
    const der = new X509Certificate(certificatePem).publicKey.export({ type: "spki", format: "der" });
    return createHash("sha256").update(der).digest("base64");
}

/**
 * Chromium trusting `stack`'s edge, closed when the file ends; undefined (with a skipped test
 * saying why) only when it truly cannot start here.
 */
async function browserFor(
    stack: LocalStack,
    trust: Trust = { pinned: stack.certificates.edgeCertificateChainPem },
): Promise<Browser | undefined> {
    try {
        return await launch(trust);
    } catch (error) {
        it(
            "launches Chromium",
            requiring(`Chromium (${chromium}) could not start here: ${(error as Error).message.split("\n")[0]}`),
            () => undefined,
        );
        return undefined;
    }
}

/**
 * What Chromium trusts: the edge's certificate alone (pinned by its public key), or a root CA, as
 * a browser trusts a public CA's: in the NSS database of its user's home (~/.pki/nssdb), which
 * Chromium on Linux reads, put there with NSS's certutil.
 */
type Trust = { readonly pinned: string } | { readonly root: string };

/** Chromium with a profile of its own, closed and its profile removed (in that order) when the file ends. */
async function launch(trust: Trust): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), "wss-edge-chromium-"));
    const home = join(profile, "home");
    if ("root" in trust) {
        const nssdb = `sql:${join(home, ".pki", "nssdb")}`;
        mkdirSync(join(home, ".pki", "nssdb"), { recursive: true });
        writeFileSync(join(home, "root.pem"), trust.root);
        execFileSync("certutil", ["-N", "-d", nssdb, "--empty-password"]);
        execFileSync("certutil", ["-A", "-d", nssdb, "-t", "C,,", "-n", "the CA under test", "-i", join(home, "root.pem")]);
    }
    let browser: Browser | undefined;
    after(async () => {
        await browser?.close();
        // Chromium's helpers may still be writing as it exits: retry a non-empty folder.
        rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    });
    browser = await puppeteer.launch({
        executablePath: chromium,
        headless: true,
        userDataDir: join(profile, "chromium"),
        env: { ...process.env, HOME: home },
        args: [
            // As root, Chromium runs only without its sandbox.
            ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
            "--disable-gpu",
            "--no-first-run",
            // This machine has no network but loopback: nothing of Chromium's own may call out.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            ...("pinned" in trust ? [`--ignore-certificate-errors-spki-list=${spkiHash(trust.pinned)}`] : []),
        ],
    });
    return browser;
}

describe("affinity cookie in Chromium", chromiumInstalled, async () => {
    const stack = await startTestEdge({ settings: { affinity: "cookie" } });
    const browser = await browserFor(stack);
    if (!browser) return;
    const origin = `https://localhost:${stack.edgeAddress.port}`;

    it("stores the cookie the page load got, sends it on every socket, and stays on one backend across 8 reconnects", async () => {
        const page = await browser.newPage();
        await page.goto(`${origin}/`);
        const backends = await page.evaluate(async (url: string) => {
            const landed: string[] = [];
            for (let i = 0; i < 9; i++) {
                landed.push(
                    await new Promise<string>((resolve, reject) => {
                        const socket = new WebSocket(url);
                        socket.onmessage = (event) => {
                            resolve(JSON.parse(String(event.data)).backend);
                            socket.close();
                        };
                        socket.onerror = () => reject(new Error("the socket failed"));
                    }),
                );
            }
            return landed;
        }, `wss://localhost:${stack.edgeAddress.port}/`);
        assert.equal(backends.length, 9);
        assert.equal(new Set(backends).size, 1, `landed on ${backends.join(", ")}`);

        const [cookie] = await browser.cookies();
        assert.equal(cookie.name, "wss_affinity");
        assert.match(cookie.value, /^[0-9a-f]{32}$/);
        assert.equal(cookie.domain, "localhost");
        assert.equal(cookie.path, "/");
        assert.equal(cookie.secure, true);
        assert.equal(cookie.httpOnly, true, "scripts of the page cannot read it");
        assert.equal(cookie.sameSite, "Lax");
        const lifetime = cookie.expires - Date.now() / 1000;
        assert.ok(lifetime > 86300 && lifetime <= 86400, `kept for ${lifetime} s`);
        assert.equal(await page.evaluate("document.cookie"), "", "HttpOnly: invisible to the page");
    });

    it("gets a 403 for a socket opened by a page of another origin", async () => {
        const page = await browser.newPage();
        // A page of another site (about:blank, served by nobody) opening a socket to the edge.
        const outcome = await page.evaluate(
            (url: string) =>
                new Promise<string>((resolve) => {
                    const socket = new WebSocket(url);
                    socket.onopen = () => resolve("open");
                    socket.onerror = () => resolve("refused");
                }),
            `wss://localhost:${stack.edgeAddress.port}/`,
        );
        assert.equal(outcome, "refused");
    });
});

/** The edge's page in both shapes: one proxy, and two behind the local front (the page's origin is the front's port). */
for (const [shape, settings, screenshot] of [
    ["", {}, "edge-page.png"],
    [" behind the local front (proxyCount 2)", { proxyCount: "2" }, "edge-page-two-proxies.png"],
] as const) {
    describe(`the page at / in Chromium${shape}`, chromiumInstalled, async () => {
        const stack = await startTestEdge({ settings });
        const browser = await browserFor(stack);
        if (!browser) return;

        it(`connects to the edge and shows the backend, both TLS legs and a round trip; a reconnect lands on the same backend${shape}`, async () => {
            const page = await browser.newPage();
            await page.setViewport({ width: 900, height: 640 });
            const answer = await page.goto(`https://localhost:${stack.edgeAddress.port}/`);
            assert.equal(answer?.status(), 200);
            assert.match(String(answer?.headers()["content-security-policy"]), /^default-src 'none'; script-src 'sha256-/);
            const text = (id: string) => page.$eval(`#${id}`, (element) => element.textContent ?? "");
            await page.waitForFunction('/ms$/.test(document.getElementById("rtt").textContent)', { timeout: 10000 });
            assert.equal(await text("state"), "open");
            assert.match(await text("backend"), /^backend-[123]$/);
            assert.match(await text("client-tls"), /^TLSv1\.[23]$/);
            assert.match(await text("backend-tls"), /^TLSv1\.2/);
            assert.match(await text("rtt"), /^\d+\.\d ms$/);
            const first = await text("backend");
            await page.click("#reconnect");
            await page.waitForFunction('document.querySelectorAll("#history li").length === 2', { timeout: 10000 });
            assert.match(
                await page.$eval("#history li:last-child", (element) => element.textContent ?? ""),
                new RegExp(`${first} \\(same backend\\)$`),
            );
            mkdirSync(join(__dirname, "..", "test-results"), { recursive: true });
            await page.screenshot({ path: join(__dirname, "..", "test-results", screenshot) });
        });
    });
}

describe(
    "certificate acme in Chromium: the edge's certificate from an ACME CA (Pebble), trusted as a browser trusts a public CA's root",
    chromiumInstalled,
    async () => {
        const stack = await startTestEdge({ settings: { certificate: "acme" } });
        const root = readFileSync(stack.outputs.caCertificatePem, "utf8");
        const browser = await browserFor(stack, { root });
        const stranger = await browserFor(stack, { root: stack.certificates.caCertificatePem });
        if (!browser || !stranger) return;
        const origin = `https://localhost:${stack.edgeAddress.port}`;

        it("loads the page and opens its socket with no certificate step: nothing pinned, nothing ignored", async () => {
            const page = await browser.newPage();
            const answer = await page.goto(`${origin}/`);
            assert.equal(answer?.status(), 200);
            assert.match(String(answer?.securityDetails()?.issuer()), /Pebble/);
            await page.waitForFunction('document.getElementById("state").textContent === "open"', { timeout: 10000 });
            assert.match(await page.$eval("#backend", (element) => element.textContent ?? ""), /^backend-[123]$/);
        });

        it("is refused by a browser that trusts another root (the stack's own CA): the trust is the ACME CA's", async () => {
            const page = await stranger.newPage();
            await assert.rejects(() => page.goto(`${origin}/`), /ERR_CERT_AUTHORITY_INVALID/);
        });
    },
);
