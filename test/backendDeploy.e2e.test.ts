// The backend deploy script refuses a bad release before it touches the host: the files the
// running app uses stay as they were. (Its Docker steps need an engine, which this machine has
// not; the AWS stack runs them.)
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { encodeDeployBundle } from "../deploy/deployBundle";
import { backendDeployScript } from "../host/backendHost";

const root = mkdtempSync(join(tmpdir(), "wss-backend-root-"));
after(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "tls"));
writeFileSync(join(root, "tls", "server.crt"), "the certificate in use\n");

const release = {
    "backend.env": "IMAGE=ghcr.io/acme/ws-app:1.4\nREGISTRY=\nBACKEND_NAME=backend-1\nPORT=8443\nPING_INTERVAL_SECONDS=30\n",
    "tls/server.crt": "-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n",
    "tls/server.key": "-----BEGIN PRIVATE KEY-----\nnew\n-----END PRIVATE KEY-----\n",
    "tls/client-ca.crt": "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
};

function deploy(bundle: string) {
    const result = spawnSync("bash", [join(__dirname, "..", backendDeployScript)], {
        input: bundle,
        env: { ...process.env, WSS_BACKEND_ROOT: root },
        encoding: "utf8",
    });
    return { status: result.status, stderr: result.stderr };
}

describe("deploy-backend.sh refuses a bad release and leaves the host as it was", () => {
    const cases: [string, string, RegExp][] = [
        [
            "an unsafe path",
            encodeDeployBundle(release).replace("tls/server.key", "../../etc/cron.d/x"),
            /bundle: unsafe path '\.\.\/\.\.\/etc\/cron\.d\/x'/,
        ],
        ["a missing key", encodeDeployBundle({ ...release, "tls/server.key": "" }), /bundle: no tls\/server\.key/],
        [
            "no app settings",
            encodeDeployBundle(Object.fromEntries(Object.entries(release).filter(([path]) => path !== "backend.env"))),
            /bundle: no backend\.env/,
        ],
        [
            "a port that is not one",
            encodeDeployBundle({ ...release, "backend.env": release["backend.env"].replace("PORT=8443", "PORT=84a3") }),
            /PORT '84a3' is not a port/,
        ],
        ["an empty bundle", "", /bundle: empty/],
    ];
    for (const [what, bundle, message] of cases) {
        it(`refuses ${what}`, () => {
            const { status, stderr } = deploy(bundle);
            assert.equal(status, 1);
            assert.match(stderr, message);
            assert.equal(readFileSync(join(root, "tls", "server.crt"), "utf8"), "the certificate in use\n");
            assert.deepEqual(
                readdirSync(root).filter((f) => f.startsWith(".staging")),
                [],
                "no staging left behind",
            );
        });
    }
});

describe("backend-fleet.sh (the fleet document's script) writes the fleet the app reads, or refuses it and keeps the one it had", () => {
    const fleet = { affinity: "hash", servers: ["10.0.1.21:8443", "10.0.2.22:8443"], self: "10.0.2.22:8443" };
    const tell = (encoded: string) =>
        spawnSync("bash", [join(__dirname, "..", "deploy", "backend-fleet.sh"), encoded], {
            // No Docker engine on this machine: `false` stands for a host whose app is not running.
            env: { ...process.env, WSS_BACKEND_ROOT: root, DOCKER: "false" },
            encoding: "utf8",
        });
    const written = () => JSON.parse(readFileSync(join(root, "fleet", "fleet.json"), "utf8"));

    it("renames the fleet into the folder the app's container mounts, and says the app reads it when it starts", () => {
        const result = tell(Buffer.from(JSON.stringify(fleet)).toString("base64"));
        assert.equal(result.status, 0, result.stderr);
        assert.match(result.stdout, /the app is not running and reads it when it starts/);
        assert.deepEqual(written(), fleet);
        assert.deepEqual(readdirSync(join(root, "fleet")), ["fleet.json"], "no temporary file left");
    });

    for (const [what, encoded, message] of [
        ["text that is not base64", "not base64!", /not valid base64/],
        ["a fleet without servers", Buffer.from('{"affinity":"hash"}').toString("base64"), /names no servers/],
    ] as const) {
        it(`refuses ${what}`, () => {
            const result = tell(encoded);
            assert.equal(result.status, 1);
            assert.match(result.stderr, message);
            assert.deepEqual(written(), fleet, "the fleet it had");
            assert.deepEqual(readdirSync(join(root, "fleet")), ["fleet.json"], "no temporary file left");
        });
    }
});
