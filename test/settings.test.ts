// Invalid configuration never reaches resource registration, and its message names the key.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SettingsError, validateSettings } from "../settings/edgeSettings";
import { dualStackPlacement, type RegisteredResource, runEdgeProgram, teamPlacement } from "./support/pulumiProgram";

const valid = {};

/** Runs the whole program with `config` and expects it to stop before registering anything. */
async function rejectsBeforeRegistration(config: Record<string, string>, key: string, rule: RegExp): Promise<void> {
    const registered: RegisteredResource[] = [];
    await assert.rejects(
        () => runEdgeProgram(config, { registered }),
        (error: Error) => {
            assert.ok(error instanceof SettingsError, `a SettingsError, got ${error}`);
            assert.match(error.message, new RegExp(`wss-edge:${key} = `), "names the key");
            assert.match(error.message, rule, "states the rule");
            return true;
        },
    );
    assert.deepEqual(
        registered.map((r) => r.name),
        [],
        "no resource registered",
    );
}

describe("invalid settings stop the program before any resource is registered", () => {
    const cases: [string, Record<string, string>, string, RegExp][] = [
        ["backend count below 1", { backendCount: "0" }, "backendCount", /whole number from 1 to 20/],
        ["backend count absurdly high", { backendCount: "500" }, "backendCount", /from 1 to 20/],
        ["backend count not a number", { backendCount: "three" }, "backendCount", /whole number/],
        ["malformed allowed CIDR", { allowedCidrs: '["10.0.0/8"]' }, "allowedCidrs", /is not a CIDR block/],
        ["CIDR with host bits set", { allowedCidrs: '["192.0.2.77/24"]' }, "allowedCidrs", /did you mean 192\.0\.2\.0\/24/],
        ["CIDR list that is not a list", { allowedCidrs: "0.0.0.0/0" }, "allowedCidrs", /list of CIDRs/],
        ["backend port out of range", { backendPort: "70000" }, "backendPort", /from 1 to 65535/],
        ["instance type not shaped like one", { proxyInstanceType: "large-machine" }, "proxyInstanceType", /EC2 instance type/],
        [
            "adminCidrs, which SSH once needed, still set",
            { adminCidrs: '["203.0.113.0/24"]' },
            "adminCidrs",
            /no longer used: deploys go through Systems Manager.*pulumi config rm adminCidrs/,
        ],
        [
            "certificate without its key",
            { domainName: "ws.example.com", tlsCertificate: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n" },
            "tlsPrivateKey",
            /set together/,
        ],
        ["idle timeout too short for any ping", { idleTimeoutSeconds: "2" }, "idleTimeoutSeconds", /from 10 to 86400/],
        ["unknown TLS policy", { tlsPolicy: "legacy" }, "tlsPolicy", /one of mozilla-intermediate, mozilla-modern/],
        ["backend protocol spelt as a range", { backendTlsProtocol: "TLSv1.2 TLSv1.3" }, "backendTlsProtocol", /one of TLSv1\.2, TLSv1\.3/],
        ["misspelt key", { backendcount: "3" }, "backendcount", /is not a setting of this stack/],
        ["image reference with a space", { backendImage: "acme/app; rm -rf /" }, "backendImage", /image reference/],
        ["a VPC without its subnets", { vpcId: teamPlacement.vpcId }, "privateSubnetIds", /set together with vpcId/],
        [
            "a subnet ID not shaped like one",
            { ...teamPlacement, publicSubnetIds: '["subnet-1; drop"]' },
            "publicSubnetIds",
            /is not an ID such as subnet-/,
        ],
        [
            "a subnet in both lists",
            { ...teamPlacement, privateSubnetIds: '["subnet-0aaa0000000000001","subnet-0bbb0000000000002"]' },
            "privateSubnetIds",
            /subnet-0aaa0000000000001, a public subnet too/,
        ],
        ["a hosted zone without the name", { hostedZoneId: "Z0123456789ABCDEFGHIJ" }, "domainName", /required with hostedZoneId/],
        ["endpoints in the default VPC", { backendEgress: "vpc-endpoints" }, "backendEgress", /applies to backends in privateSubnetIds/],
        [
            "endpoints with an image of the user's own",
            { ...teamPlacement, backendEgress: "vpc-endpoints", backendImage: "ghcr.io/acme/ws:1" },
            "backendImage",
            /backends behind VPC endpoints cannot reach/,
        ],
        // Checked against what EC2 says of the network, still before anything is registered.
        [
            "a subnet of another VPC",
            { ...teamPlacement, publicSubnetIds: '["subnet-0aaa0000000000001","subnet-0ccc0000000000001"]' },
            "publicSubnetIds",
            /subnet-0ccc0000000000001 is in vpc-0f0f0f0f0f0f0f0f0, not in vpcId vpc-0a1b2c3d4e5f60001/,
        ],
        [
            "backends in one zone",
            { ...teamPlacement, privateSubnetIds: '["subnet-0bbb0000000000001"]' },
            "privateSubnetIds",
            /the backends need subnets in 2 availability zones; these are in 1 \(eu-west-1a\)/,
        ],
        [
            "a balancer in one zone",
            { ...teamPlacement, proxyCount: "2", publicSubnetIds: '["subnet-0aaa0000000000001"]' },
            "publicSubnetIds",
            /the proxies need subnets in 2 availability zones/,
        ],
        [
            "endpoints where a central team's are already",
            { ...dualStackPlacement, backendEgress: "vpc-endpoints" },
            "backendEgress",
            /vpce-0central-ssm already serves ssm in vpc-0d0d0d0d0d0d0d0d0 \(with private DNS\).*use backendEgress nat/,
        ],
        [
            "a public subnet with no route to an internet gateway",
            {
                ...teamPlacement,
                publicSubnetIds: '["subnet-0bbb0000000000003"]',
                privateSubnetIds: '["subnet-0bbb0000000000001","subnet-0bbb0000000000002"]',
            },
            "publicSubnetIds",
            /subnet-0bbb0000000000003 is not public: its route table \(rtb-0main-vpc-0a1b2c3d4e5f60001\) sends 0\.0\.0\.0\/0 to no internet gateway/,
        ],
    ];
    for (const [name, config, key, rule] of cases) {
        it(`rejects ${name}, naming ${key}`, () => rejectsBeforeRegistration({ ...valid, ...config }, key, rule));
    }

    it("names a subnet EC2 does not know, before anything is registered", async () => {
        const registered: RegisteredResource[] = [];
        await assert.rejects(
            () => runEdgeProgram({ ...teamPlacement, publicSubnetIds: '["subnet-0ddd0000000000009"]' }, { registered }),
            /subnet subnet-0ddd0000000000009: EC2 does not know it in this region \(InvalidSubnetID.NotFound/,
        );
        assert.deepEqual(registered, []);
    });

    // Every character that would end a directive, open a block, quote or expand a variable.
    for (const [what, bad] of [
        ["a semicolon", "ws.example.com;"],
        ["an opening brace", "ws{.example.com"],
        ["a closing brace", "ws}.example.com"],
        ["a double quote", 'ws".example.com'],
        ["a single quote", "ws'.example.com"],
        ["whitespace", "ws example.com"],
        ["a newline", "ws.example.com\nserver_name evil"],
        ["a dollar sign", "ws.$host.com"],
    ]) {
        it(`rejects a domain name containing ${what}`, () =>
            rejectsBeforeRegistration({ ...valid, domainName: bad }, "domainName", /fully qualified DNS name/));
    }

    it("reports every problem at once, and never echoes a secret", () => {
        assert.throws(
            () => validateSettings({ backendPort: "0", backendCount: "99", tlsPrivateKey: "not a key", allowedCidrs: '["10.1.2.3/8"]' }),
            (error: Error) => {
                assert.match(error.message, /4 problems/);
                for (const key of ["backendPort", "backendCount", "tlsPrivateKey", "allowedCidrs"])
                    assert.match(error.message, new RegExp(`wss-edge:${key}`));
                assert.match(error.message, /tlsPrivateKey = \[secret\]/);
                assert.doesNotMatch(error.message, /not a key/);
                return true;
            },
        );
    });

    it("accepts IPv6 ranges and fills every default", () => {
        const settings = validateSettings({ allowedCidrs: '["2001:db8:1234::/48"]' });
        assert.deepEqual(settings.allowedCidrs, ["2001:db8:1234::/48"]);
        assert.deepEqual(validateSettings({}).allowedCidrs, ["0.0.0.0/0", "::/0"]);
        assert.equal(settings.backendCount, 3);
        assert.equal(settings.tlsPolicy, "mozilla-intermediate");
        assert.equal(settings.backendTlsProtocol, "TLSv1.2");
    });
});
