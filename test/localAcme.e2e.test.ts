// certificate acme on the local stack: the edge's certificate comes from Debian's Pebble (standing
// in for Let's Encrypt) by DNS-01 through Pebble's DNS server (standing in for the Route 53 zone),
// one certificate for every proxy; a client that trusts only Pebble's root connects and one that
// trusts only the stack's CA is refused; the stack renews it while it runs, once a third of its
// lifetime is left, and delivers it with a reload that keeps open sockets.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { peerCertificateFingerprint } from "../local/probes";
import { waitUntil } from "../local/processes";
import { close, echo } from "../smoke/edgeClient";
import { connectToEdge, startTestEdge } from "./support/localEdge";

const lifetimeSeconds = 30;

for (const proxyCount of [1, 2]) {
    describe(`certificate acme on the local stack, ${proxyCount === 1 ? "one proxy" : "two proxies behind the front"}`, async () => {
        const stack = await startTestEdge({
            settings: { certificate: "acme", proxyCount: String(proxyCount) },
            acmeLifetimeSeconds: lifetimeSeconds,
        });
        const root = readFileSync(stack.outputs.caCertificatePem, "utf8");
        const { host, port } = stack.edgeAddress;
        const served = () => peerCertificateFingerprint(host, port, { ca: root, servername: "localhost" });

        it("serves Pebble's certificate for localhost: a client trusting only Pebble's root connects, one trusting only the stack's CA is refused", async () => {
            assert.notEqual(root, stack.certificates.caCertificatePem, "clients are pointed at Pebble's root");
            const leaf = new X509Certificate(stack.certificates.edgeCertificateChainPem);
            assert.equal(leaf.subjectAltName, "DNS:localhost");
            assert.match(leaf.issuer, /Pebble/);
            assert.equal(await served(), leaf.fingerprint256);
            const { socket, hello } = await connectToEdge(stack);
            assert.ok(hello.backend);
            await close(socket);
            assert.equal(
                await peerCertificateFingerprint(host, port, { ca: stack.certificates.caCertificatePem, servername: "localhost" }),
                undefined,
            );
        });

        it("renews it before it expires and serves the new one, keeping an open socket", async () => {
            const first = await served();
            const { socket } = await connectToEdge(stack);
            try {
                // Due with a third of its 30 s left; bounded by two lifetimes. Delivered once every
                // proxy serves it: behind the front, each new connection may reach either one. On a
                // busy machine the renewal may already be under way here, so what counts is that
                // the certificate served now gives way to the stack's newest.
                assert.ok(first, "a certificate is served");
                await waitUntil(
                    2 * lifetimeSeconds * 1000,
                    async () => {
                        const renewed = new X509Certificate(stack.certificates.edgeCertificateChainPem).fingerprint256;
                        if (renewed === first) return false;
                        for (let n = 0; n < 4 * proxyCount; n++) if ((await served()) !== renewed) return false;
                        return true;
                    },
                    "the renewed certificate did not reach every proxy",
                );
                assert.equal(
                    (await echo(socket, "still here")).toString(),
                    "still here",
                    "the socket opened before the renewal still carries messages",
                );
            } finally {
                await close(socket);
            }
        });
    });
}
