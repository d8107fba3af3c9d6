// The command `pulumi up` runs after the proxies' group takes a new template version
// (deploy/await-refresh.sh), run as the up runs it, with Debian's AWS CLI, against a stand-in for
// Auto Scaling's and the balancer's read APIs on loopback: it reports the refresh and the drains
// as they go, passes once the refresh succeeded, and fails the up with AWS's reason when it rolls
// back.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { repositoryRoot } from "../local/localStack";
import { RefreshStandIn, type RefreshState } from "./support/refreshStandIn";
import { requiring, unlessInstalled } from "./support/requirements";

const run = promisify(execFile);
const script = join(repositoryRoot, "deploy", "await-refresh.sh");
const awsCli = requiring(unlessInstalled({ "/usr/bin/aws": "awscli" }));
const group = "wss-edge-dev-proxies-0a1b2c";

async function awaitRefresh(course: readonly RefreshState[], extra: Record<string, string> = {}) {
    const standIn = await RefreshStandIn.start(group, course);
    try {
        const result = await run("bash", [script], {
            env: {
                PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
                HOME: process.env.HOME,
                AWS_ACCESS_KEY_ID: "stand-in",
                AWS_SECRET_ACCESS_KEY: "stand-in",
                WSS_EDGE_REGION: "eu-west-1",
                WSS_EDGE_TARGETS: `asg:${group}`,
                WSS_EDGE_TARGET_GROUPS: "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/edge-443/0a1b",
                WSS_EDGE_POLL_SECONDS: "0.2",
                WSS_EDGE_AUTOSCALING_ENDPOINT: standIn.endpoint,
                WSS_EDGE_ELB_ENDPOINT: standIn.endpoint,
                ...extra,
            },
            timeout: 120_000,
        }).then(
            ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
            (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
        );
        return { ...result, looks: standIn.looks };
    } finally {
        await standIn.stop();
    }
}

describe("waiting for the proxies' instance refresh (deploy/await-refresh.sh)", awsCli, () => {
    it("reports each change of the refresh and the drains, and passes once it succeeded", async () => {
        const { code, stdout, stderr, looks } = await awaitRefresh([
            { status: "Pending", instancesToUpdate: 2 },
            { status: "InProgress", percentComplete: 0, instancesToUpdate: 2 },
            { status: "InProgress", percentComplete: 0, instancesToUpdate: 2 },
            { status: "InProgress", percentComplete: 50, instancesToUpdate: 1, draining: 1 },
            { status: "InProgress", percentComplete: 50, instancesToUpdate: 1, draining: 1 },
            { status: "Successful", percentComplete: 100, instancesToUpdate: 0 },
        ]);
        assert.equal(code, 0, stderr);
        const lines = stdout.trim().split("\n");
        assert.deepEqual(
            lines.map((line) => line.replace(/refresh \S+ of/, "refresh of")),
            [
                `instance refresh of ${group}: Pending, 0% done, 2 proxies still to replace, 0 draining`,
                `instance refresh of ${group}: InProgress, 0% done, 2 proxies still to replace, 0 draining`,
                `instance refresh of ${group}: InProgress, 50% done, 1 proxies still to replace, 1 draining`,
                `instance refresh of ${group}: Successful, 100% done, 0 proxies still to replace, 0 draining`,
            ],
            "each state once, as it changes",
        );
        assert.equal(looks, 6, "it looked until the refresh ended, and no further");
    });

    for (const status of ["RollbackSuccessful", "Failed", "Cancelled"]) {
        it(`fails the up with AWS's reason when the refresh ends ${status}`, async () => {
            const reason = "Instance i-0new failed ELB health checks; rolling back";
            const { code, stderr } = await awaitRefresh([
                { status: "InProgress", percentComplete: 0, instancesToUpdate: 2 },
                { status, percentComplete: 0, instancesToUpdate: 2, reason },
            ]);
            assert.equal(code, 1);
            assert.match(stderr, new RegExp(`ended ${status}: ${reason}`));
        });
    }

    it("passes at once when the group has had no refresh (its first up, or an up that changed no template)", async () => {
        const { code, stdout } = await awaitRefresh([]);
        assert.equal(code, 0);
        assert.match(stdout, new RegExp(`the group ${group} has no instance refresh`));
    });

    it("gives up, saying so, once the refresh outlasts its time", async () => {
        const { code, stderr } = await awaitRefresh([{ status: "InProgress", percentComplete: 0, instancesToUpdate: 2 }], {
            WSS_EDGE_REFRESH_TIMEOUT: "1",
        });
        assert.equal(code, 1);
        assert.match(stderr, /is still InProgress after 1 s/);
    });

    it("refuses targets that are not a group, naming them", async () => {
        const { code, stderr } = await awaitRefresh([], { WSS_EDGE_TARGETS: "i-0123" });
        assert.equal(code, 1);
        assert.match(stderr, /WSS_EDGE_TARGETS must be asg:NAME, not 'i-0123'/);
    });
});
