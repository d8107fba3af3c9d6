// The edge's certificate from an ACME CA on AWS, under Pulumi's mocks: with a name and a hosted
// zone the stack orders one certificate for the whole edge (however many proxies) by DNS-01
// through that zone, serves it from every proxy's release, keeps ACM's copy for the renewal
// alarm, and refuses a certificate setting that lacks what it needs before registering anything.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renewalAlarmDaysLeft, splitChain } from "../components/acmeCertificate";
import { validateSettings } from "../settings/edgeSettings";
import { once } from "./support/once";
import { bundleFiles, named, ofType, type RegisteredResource, resolved, runEdgeProgram, teamPlacement } from "./support/pulumiProgram";

const orders = (resources: RegisteredResource[]) => ofType(resources, "pulumi-nodejs:dynamic/wss-edge:AcmeOrder");
const zone = "Z0123456789ABCDEFGHIJ";
/** What each PEM block of the mocks' certificates says (they carry text, not DER). */
const texts = (pem: string) =>
    [...pem.matchAll(/-----BEGIN [A-Z ]+-----\n([\s\S]+?)\n-----END/g)].map((m) => Buffer.from(m[1], "base64").toString());
const named_ = { ...teamPlacement, domainName: "ws.example.com", hostedZoneId: zone };

describe("certificate acme on AWS (the default with domainName and hostedZoneId)", () => {
    const single = once(() => runEdgeProgram(named_));
    const balanced = once(() => runEdgeProgram({ ...named_, proxyCount: "3" }));

    it("orders one certificate for domainName from Let's Encrypt, by DNS-01 through the zone, on an account whose key stays secret", async () => {
        const { resources } = await single();
        const [order, ...more] = orders(resources);
        assert.equal(more.length, 0);
        assert.equal(order.inputs.domainName, "ws.example.com");
        assert.equal(await resolved(order.inputs.hostedZoneId), zone);
        assert.equal(order.inputs.directoryUrl, "https://acme-v02.api.letsencrypt.org/directory");
        assert.ok(order.secretInputs.has("accountKeyPem"), "the account key reaches the provider as a secret");
        assert.equal(typeof order.inputs.__provider, "string", "the provider travels as its serialized closure");
    });

    it("orders one certificate however many proxies there are (the CA's limits are per name)", async () => {
        assert.equal(orders((await balanced()).resources).length, 1);
    });

    it("serves it from every proxy's release instead of one signed by the stack's CA, and reports its expiry", async () => {
        for (const run of [single, balanced]) {
            const { resources, outputs } = await run();
            const release = bundleFiles(named(resources, "edge-deploy-release").inputs.content);
            assert.deepEqual(texts(release["tls/edge.crt"]), ["acme leaf edge-acme-order", "acme intermediate"]);
            assert.deepEqual(texts(release["tls/edge.key"]), ["acme key edge-acme-order"]);
            assert.ok(
                !ofType(resources, "tls:index/locallySignedCert:LocallySignedCert").some((r) => r.name === "edge-edge"),
                "the stack's CA signs no edge certificate",
            );
            assert.equal((outputs.certificateExpiry as Record<string, string>).edge, "2027-03-02T10:00:00.000Z");
        }
    });

    it("keeps ACM's copy (leaf, chain and key) and alarms on its DaysToExpiry once the renewal is more than a week late", async () => {
        const { resources } = await single();
        const [copy] = ofType(resources, "aws:acm/certificate:Certificate");
        assert.deepEqual(texts(await resolved(copy.inputs.certificateBody)), ["acme leaf edge-acme-order"]);
        assert.deepEqual(texts(await resolved(copy.inputs.certificateChain)), ["acme intermediate"]);
        assert.ok(copy.secretInputs.has("privateKey"));
        const alarm = named(resources, "edge-certificate-renewal");
        assert.equal(alarm.inputs.namespace, "AWS/CertificateManager");
        assert.equal(alarm.inputs.metricName, "DaysToExpiry");
        assert.deepEqual(await resolved(alarm.inputs.dimensions), {
            CertificateArn: "arn:aws:acm:eu-west-1:123456789012:certificate/edge-acme-copy",
        });
        assert.equal(alarm.inputs.comparisonOperator, "LessThanThreshold");
        assert.equal(await resolved(alarm.inputs.threshold), 22, "30 days of renewal window, less a week and a day");
        assert.equal(alarm.inputs.period, 86_400);
        assert.equal(alarm.inputs.treatMissingData, "missing", "no alarm before ACM's first daily point");
        assert.deepEqual(await resolved(alarm.inputs.alarmActions), ["arn:aws:sns:eu-west-1:123456789012:edge-alarms"]);
    });

    it("uses the stack's CA when asked (certificate stack-ca), with the zone's record all the same", async () => {
        const { resources } = await runEdgeProgram({ ...named_, certificate: "stack-ca" });
        assert.deepEqual(orders(resources), []);
        assert.deepEqual(ofType(resources, "aws:acm/certificate:Certificate"), []);
        assert.ok(ofType(resources, "tls:index/locallySignedCert:LocallySignedCert").some((r) => r.name === "edge-edge"));
        assert.equal(named(resources, "edge-dns").inputs.zoneId, zone);
    });
});

describe("the certificate setting's rules", () => {
    const problems = (raw: Record<string, string>) => {
        try {
            validateSettings(raw);
            return [];
        } catch (error) {
            return ((error as { problems?: { key: string; rule: string }[] }).problems ?? []).map((p) => `${p.key}: ${p.rule}`);
        }
    };

    it("asks acme for the name and the zone it proves it through", () => {
        assert.deepEqual(problems({ certificate: "acme" }), [
            "domainName: is required with certificate acme: the name the certificate is for",
            "hostedZoneId: is required with certificate acme: the zone that holds domainName, where the CA's DNS-01 challenge is answered",
        ]);
    });

    it("asks provided for your certificate, and refuses one that would go unused", () => {
        assert.deepEqual(problems({ certificate: "provided", domainName: "ws.example.com" }), [
            "tlsCertificate: is required with certificate provided: your certificate chain for domainName",
        ]);
    });

    it("refuses an ACME directory that nothing would use", () => {
        assert.deepEqual(problems({ acmeDirectory: "https://acme-staging-v02.api.letsencrypt.org/directory" }), [
            "acmeDirectory: is used only with certificate acme, not certificate stack-ca (auto)",
        ]);
    });

    it("renews with a third of the lifetime left and alarms a week and a day after the renewal was due", () => {
        assert.equal(renewalAlarmDaysLeft("2027-03-02T10:00:00.000Z", "2027-01-31T10:00:00.000Z"), 22);
        assert.equal(renewalAlarmDaysLeft("2027-03-02T10:00:00.000Z", "2027-02-28T10:00:00.000Z"), 1, "never below a day");
        assert.deepEqual(
            splitChain(
                "-----BEGIN CERTIFICATE-----\na\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nb\n-----END CERTIFICATE-----\n",
            ),
            {
                leaf: "-----BEGIN CERTIFICATE-----\na\n-----END CERTIFICATE-----\n",
                chain: "-----BEGIN CERTIFICATE-----\nb\n-----END CERTIFICATE-----\n",
            },
        );
    });
});
