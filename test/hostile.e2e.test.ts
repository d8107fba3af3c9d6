// The hostile-input corpus against a live local edge (real NGINX, real backends). After every
// case a fresh, legitimate WebSocket must still work.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { LocalStack } from "../local/localStack";
import { close, echo } from "../smoke/edgeClient";
import { corpusConnectionsPerAddress, hostileCorpus } from "./hostile/corpus";
import { outcomeTable } from "./hostile/outcomeTable";
import { connectToEdge, startTestEdge } from "./support/localEdge";

describe("hostile input", async () => {
    // One edge per affinity mode the corpus needs, each with the corpus's per-address limit.
    const edges = {
        default: await startTestEdge({ settings: { connectionsPerAddress: String(corpusConnectionsPerAddress) } }),
        cookie: await startTestEdge({ settings: { connectionsPerAddress: String(corpusConnectionsPerAddress), affinity: "cookie" } }),
        "query:room": await startTestEdge({
            settings: { connectionsPerAddress: String(corpusConnectionsPerAddress), affinity: "query:room" },
        }),
    };
    const stack = edges.default;

    const stillServing = async (edge: LocalStack) => {
        const { socket } = await connectToEdge(edge);
        assert.equal((await echo(socket, "legitimate")).toString(), "legitimate", "a legitimate socket still works");
        await close(socket);
    };

    for (const hostile of hostileCorpus.filter((c) => c.name !== "connection flood from one address")) {
        it(`${hostile.layer}: ${hostile.name} → ${hostile.outcome}`, async () => {
            const edge = edges[hostile.affinity ?? "default"];
            await hostile.run({ ...edge.edgeAddress, ca: edge.certificates.caCertificatePem });
            await stillServing(edge);
        });
    }

    it(`HTTP: connection flood from one address → limit_conn answers 503 past ${corpusConnectionsPerAddress}, other addresses unaffected`, async () => {
        const flooder = "127.66.0.1";
        const held = await Promise.all(
            Array.from({ length: corpusConnectionsPerAddress }, () => connectToEdge(stack, { localAddress: flooder })),
        );
        try {
            await assert.rejects(connectToEdge(stack, { localAddress: flooder }), /answered 503/);
            await stillServing(stack);
        } finally {
            await Promise.all(held.map((s) => close(s.socket)));
        }
        const { socket } = await connectToEdge(stack, { localAddress: flooder });
        await close(socket);
    });

    it("has at least 30 cases, each documented in docs/hostile-input.md", () => {
        assert.ok(hostileCorpus.length >= 30, `${hostileCorpus.length} cases`);
        const documented = readFileSync(join(__dirname, "..", "docs", "hostile-input.md"), "utf8");
        assert.equal(documented, outcomeTable(hostileCorpus), "docs/hostile-input.md is stale: run `npm run docs:hostile`");
    });
});
