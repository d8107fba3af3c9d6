// The edge's certificate from an ACME CA by DNS-01 (acme/certificateIssuer.ts), against Debian's
// Pebble and its DNS server standing in for Let's Encrypt and the hosted zone: the certificate
// chains to the CA's root and names the edge, a client that trusts only that root connects, a
// renewal on the same account gives a new key, and a record the CA cannot see fails the order
// with the CA's own reason.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { describe, it } from "node:test";
import { connect, createServer } from "node:tls";
import { CreateHostedZoneCommand, ListResourceRecordSetsCommand, Route53Client } from "@aws-sdk/client-route-53";
import * as pulumi from "@pulumi/pulumi";
import * as acme from "acme-client";
import {
    type Dns01,
    issueCertificate,
    newAccountKey,
    renewalPoint,
    renewalTime,
    renewalWindow,
    trustDirectoryCa,
} from "../acme/certificateIssuer";
import { ChallengeTestServerDns } from "../acme/challengeTestServer";
import { Route53Dns } from "../acme/route53Dns";
import { type AcmeOrderInputs, type AcmeOrderOutputs, acmeOrderProvider, orderRenewalDue } from "../components/acmeCertificate";
import { startMoto } from "./support/motoServer";
import { startPebble } from "./support/pebble";
import { trixiePebbleBinaries } from "./support/trixiePebble";

// What Pulumi's dynamic-provider host loads a provider's serialized closure with.
const requireFromString = require("require-from-string") as (code: string) => unknown;

const domain = "ws.wss-edge.test";
const lifetimeSeconds = 300;

/** The PEM blocks of a chain, leaf first. */
const certificatesOf = (chain: string) =>
    (chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? []).map((pem) => new X509Certificate(pem));

describe("the edge's certificate from an ACME CA, by DNS-01", async () => {
    const ca = await startPebble({ certificateValiditySeconds: lifetimeSeconds });
    const account = { directoryUrl: ca.directoryUrl, accountKeyPem: await newAccountKey(), directoryCaPem: ca.listenerCaPem };
    const dns = new ChallengeTestServerDns(ca.dnsManagementUrl);
    const first = await issueCertificate(account, domain, dns);

    it("chains to the CA's root, and names the edge and nothing else", async () => {
        const [leaf, intermediate, ...rest] = certificatesOf(first.certificatePem);
        assert.equal(rest.length, 0, "leaf and intermediate: the root is the client's");
        assert.equal(leaf.subjectAltName, `DNS:${domain}`);
        assert.ok(leaf.verify(intermediate.publicKey), "the intermediate signed the leaf");
        assert.ok(intermediate.verify(new X509Certificate(await ca.root()).publicKey), "the root signed the intermediate");
        assert.ok(leaf.checkPrivateKey((await import("node:crypto")).createPrivateKey(first.privateKeyPem)), "the key is the leaf's");
    });

    it("lets a client that trusts only the CA's root connect, by the edge's name", async () => {
        const server = createServer({ cert: first.certificatePem, key: first.privateKeyPem }, (socket) => socket.end("hello"));
        server.listen(0, "127.0.0.1");
        await once(server, "listening");
        try {
            const port = (server.address() as { port: number }).port;
            const socket = connect({ host: "127.0.0.1", port, servername: domain, ca: await ca.root() });
            await once(socket, "secureConnect");
            assert.equal(socket.authorized, true, String(socket.authorizationError));
            socket.destroy();
        } finally {
            server.close();
        }
    });

    it("is due for renewal once a third of its lifetime is left; a renewal on the same account brings a new key", async () => {
        const leaf = certificatesOf(first.certificatePem)[0];
        const notBefore = Date.parse(leaf.validFrom);
        const notAfter = Date.parse(leaf.validTo);
        assert.ok(Math.abs(renewalTime(first.certificatePem).getTime() - (notAfter - (notAfter - notBefore) / 3)) < 1);
        const renewed = await issueCertificate(account, domain, dns);
        assert.notEqual(certificatesOf(renewed.certificatePem)[0].serialNumber, leaf.serialNumber);
        assert.notEqual(renewed.privateKeyPem, first.privateKeyPem);
    });

    it("fails the order with the CA's reason when the record never reaches the zone", async () => {
        const silent: Dns01 = { set: async () => {}, clear: async () => {} };
        await assert.rejects(
            () => issueCertificate(account, "unseen.wss-edge.test", silent),
            /refused the DNS-01 challenge at _acme-challenge\.unseen\.wss-edge\.test: No TXT records found/,
        );
    });
});

describe("DNS-01 through a Route 53 hosted zone (moto's server standing in for Route 53's API)", async () => {
    const moto = await startMoto();
    const skip = moto === undefined ? "this machine's Python has no moto (pip install 'moto[server]')" : false;
    const zoneName = "wss-edge.test";
    const name = `_acme-challenge.ws.${zoneName}`;
    const setUp = async () => {
        if (!moto) throw new Error("unreachable");
        // moto signs nothing; the SDK still wants credentials to sign with.
        Object.assign(process.env, { AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing", AWS_REGION: "us-east-1" });
        const client = new Route53Client({ region: "us-east-1", endpoint: moto.endpoint });
        const zone = await client.send(new CreateHostedZoneCommand({ Name: zoneName, CallerReference: String(Date.now()) }));
        const zoneId = String(zone.HostedZone?.Id).replace("/hostedzone/", "");
        const txt = async () =>
            ((await client.send(new ListResourceRecordSetsCommand({ HostedZoneId: zoneId }))).ResourceRecordSets ?? [])
                .filter((r) => r.Type === "TXT" && r.Name === `${name}.`)
                .map((r) => ({ ttl: r.TTL, values: r.ResourceRecords?.map((v) => v.Value) }));
        return { dns: new Route53Dns(zoneId, { endpoint: moto.endpoint, pollMs: 50 }), txt };
    };

    it("publishes the challenge's value quoted, overwrites a leftover, and clears it exactly", { skip }, async () => {
        const { dns, txt } = await setUp();
        await dns.set(name, "left-behind-by-a-failed-run");
        await dns.set(name, "token.thumbprint");
        assert.deepEqual(await txt(), [{ ttl: 60, values: ['"token.thumbprint"'] }]);
        await dns.clear(name, "token.thumbprint");
        assert.deepEqual(await txt(), []);
    });

    it("names the zone when Route 53 refuses the change", { skip }, async () => {
        const { dns } = await setUp();
        await assert.rejects(() => dns.clear(`_acme-challenge.never-set.${zoneName}`, "x"), /./);
        const unknown = new Route53Dns("Z0000000000000NOZONE", { endpoint: moto?.endpoint, pollMs: 50 });
        await assert.rejects(() => unknown.set(name, "x"), /NoSuchHostedZone|No hosted zone/i);
    });
});

/** What the stack gives the ACME order, for the edge's name at `directoryUrl`, on a new account. */
async function orderInputs(directoryUrl: string): Promise<AcmeOrderInputs> {
    return {
        domainName: domain,
        directoryUrl,
        hostedZoneId: "Z0123456789ABCDEFGHIJ",
        accountKeyPem: await newAccountKey(),
        awsProfile: "",
    };
}

describe("the ACME order's dynamic provider, as the Pulumi engine's dynamic-provider host runs it", async () => {
    const ca = await startPebble({ certificateValiditySeconds: lifetimeSeconds });
    // This process trusts Pebble's test listener, as every machine trusts Let's Encrypt's.
    trustDirectoryCa(ca.listenerCaPem);
    // Serialized as @pulumi/pulumi/dynamic serializes it, loaded as cmd/dynamic-provider loads it:
    // requireFromString(text).handler(). What runs is the closure's copy, not this file's.
    const provider = acmeOrderProvider(() => new ChallengeTestServerDns(ca.dnsManagementUrl));
    const serialized = await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
    const host = (requireFromString(serialized.text) as { handler: () => pulumi.dynamic.ResourceProvider }).handler();
    const inputs = await orderInputs(ca.directoryUrl);
    const created = await host.create!(inputs);
    const outs = created.outs as AcmeOrderOutputs;

    it("orders the certificate: it chains to the CA's root, names the edge, and says when it expires and is due", async () => {
        const [leaf, intermediate] = certificatesOf(outs.certificatePem);
        assert.equal(leaf.subjectAltName, `DNS:${domain}`);
        assert.ok(intermediate.verify(new X509Certificate(await ca.root()).publicKey));
        assert.equal(created.id, `${domain}/${leaf.serialNumber}`);
        assert.equal(outs.notAfter, new Date(leaf.validTo).toISOString());
        assert.equal(outs.renewAfter, renewalTime(outs.certificatePem).toISOString());
    });

    it("changes nothing before its renewal time; replaces it after, or for another name, CA, zone or account", async () => {
        const diff = host.diff!;
        assert.deepEqual(await diff(created.id, outs, inputs), { changes: false, replaces: [] });
        const due = { ...outs, renewAfter: new Date(Date.now() - 1000).toISOString() };
        assert.deepEqual(await diff(created.id, due, inputs), { changes: true, replaces: ["renewAfter"] });
        assert.deepEqual(await diff(created.id, outs, { ...inputs, domainName: `edge.${domain}` }), {
            changes: true,
            replaces: ["domainName"],
        });
        assert.deepEqual(await diff(created.id, outs, { ...inputs, hostedZoneId: "Z0000000000000OTHER" }), {
            changes: true,
            replaces: ["hostedZoneId"],
        });
    });

    it("renews on the same account: the replacement is a new certificate with a new key", async () => {
        const renewed = (await host.create!(inputs)).outs as AcmeOrderOutputs;
        assert.notEqual(certificatesOf(renewed.certificatePem)[0].serialNumber, certificatesOf(outs.certificatePem)[0].serialNumber);
        assert.notEqual(renewed.privateKeyPem, outs.privateKeyPem);
    });
});

describe("ACME Renewal Information (RFC 9773), from a CA that offers it: Debian 13's Pebble", async () => {
    // Let's Encrypt's 90 days: Pebble's window is two days wide around two thirds of the lifetime.
    const ca = await startPebble({ certificateValiditySeconds: 90 * 86_400, binaries: trixiePebbleBinaries() });
    trustDirectoryCa(ca.listenerCaPem);
    const inputs = await orderInputs(ca.directoryUrl);
    const provider = acmeOrderProvider(() => new ChallengeTestServerDns(ca.dnsManagementUrl));
    const created = await provider.create?.(inputs);
    const outs = created?.outs as AcmeOrderOutputs;
    const leaf = certificatesOf(outs.certificatePem)[0];

    it("finds the certificate by its identifier and suggests a window around its renewal time, which the order's diff keeps to", async () => {
        const window = await renewalWindow(inputs, outs.certificatePem);
        assert.ok(window, "the directory offers renewalInfo");
        const own = Date.parse(outs.renewAfter);
        assert.ok(window.start.getTime() < own && own < window.end.getTime(), `${JSON.stringify(window)} around ${outs.renewAfter}`);
        assert.ok(Date.parse(leaf.validFrom) < window.start.getTime() && window.end.getTime() < Date.parse(leaf.validTo));
        const point = renewalPoint(window, outs.certificatePem);
        assert.ok(point >= window.start && point <= window.end, "a point of the window");
        const due = await orderRenewalDue(outs);
        assert.equal(due.at.getTime(), Math.min(point.getTime(), own), "the CA's point if earlier than the certificate's own time");
        assert.deepEqual(await provider.diff?.(String(created?.id), outs, inputs), { changes: false, replaces: [] });
    });

    it("renews at once when the CA revokes the certificate, long before its own renewal time", async () => {
        const client = new acme.Client({ directoryUrl: inputs.directoryUrl, accountKey: inputs.accountKeyPem });
        await client.createAccount({ onlyReturnExisting: true });
        await client.revokeCertificate(outs.certificatePem, { reason: 1 });
        const window = await renewalWindow(inputs, outs.certificatePem);
        assert.ok(window && window.start.getTime() <= Date.now(), `the window moved to now: ${JSON.stringify(window)}`);
        assert.ok(Date.now() < Date.parse(outs.renewAfter), "the certificate's own renewal time is still ahead");
        assert.deepEqual(await provider.diff?.(String(created?.id), outs, inputs), { changes: true, replaces: ["renewalInfo"] });
    });

    it("falls back to the certificate's own renewal time where the CA offers none (Debian 12's Pebble)", async () => {
        const older = await startPebble({ certificateValiditySeconds: lifetimeSeconds });
        const issued = await issueCertificate(
            { directoryUrl: older.directoryUrl, accountKeyPem: await newAccountKey(), directoryCaPem: older.listenerCaPem },
            domain,
            new ChallengeTestServerDns(older.dnsManagementUrl),
        );
        assert.equal(await renewalWindow({ directoryUrl: older.directoryUrl }, issued.certificatePem), undefined);
        const renewAfter = renewalTime(issued.certificatePem).toISOString();
        assert.deepEqual(await orderRenewalDue({ ...inputs, directoryUrl: older.directoryUrl, ...issued, notAfter: "", renewAfter }), {
            at: new Date(renewAfter),
            by: "renewAfter",
        });
    });
});
