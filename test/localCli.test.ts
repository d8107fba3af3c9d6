// The local stack's command line, read without starting anything.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseInvocation, UsageError } from "../local/cli";

const root = join(__dirname, "..");
const parse = (...argv: string[]) => parseInvocation(argv, {}, root);

describe("local stack command line", () => {
    it("takes edge settings with --set, repeated, values kept as text", () => {
        const { settings } = parse(
            "start",
            "--set",
            "idleTimeoutSeconds=60",
            "--set",
            "tlsPolicy=mozilla-modern",
            "--set",
            "connectionsPerAddress=0",
        );
        assert.deepEqual(settings, { idleTimeoutSeconds: "60", tlsPolicy: "mozilla-modern", connectionsPerAddress: "0" });
    });

    it("reads a stack file's edge settings with --stack, lists its AWS placement settings as left out, and lets --set win", () => {
        const { settings, ignored } = parse("up", "--stack", "dev", "--set", "idleTimeoutSeconds=90");
        assert.deepEqual(settings, { backendCount: "3", idleTimeoutSeconds: "90", httpRedirect: "true" });
        assert.deepEqual([...ignored].sort(), ["backendInstanceType", "proxyInstanceType"]);
    });

    it("defaults to port 8443 or EDGE_PORT, and the .local folder", () => {
        assert.equal(parse("start").port, 8443);
        assert.equal(parseInvocation(["start"], { EDGE_PORT: "9443" }, root).port, 9443);
        assert.equal(parse("down").stateDir, join(root, ".local"));
        assert.equal(parse("start", "--state", "/tmp/elsewhere").stateDir, "/tmp/elsewhere");
    });

    it("answers --help on every command", () => {
        for (const command of ["start", "up", "down"]) assert.equal(parse(command, "--help").command, "help");
        assert.equal(parse("--help").command, "help");
    });

    for (const [argv, message] of [
        [["start", "--set", "idleTimeoutSeconds"], /must be KEY=VALUE/],
        [["start", "--port", "99999"], /--port "99999" must be a whole number from 1 to 65535/],
        [["start", "--stack", "nosuch"], /cannot read .*Pulumi\.nosuch\.yaml/],
        [["start", "--stack", "../x"], /is not a stack name/],
        [["restart"], /unknown command "restart"/],
        [["start", "--bogus"], /Unknown option '--bogus'/],
    ] as const) {
        it(`refuses ${argv.join(" ")}`, () =>
            assert.throws(
                () => parse(...argv),
                (error: Error) => error instanceof UsageError && message.test(error.message),
            ));
    }
});
