import type { HostileCase } from "./corpus";

/** docs/hostile-input.md, generated from the corpus so the table and the tests never drift. */
export function outcomeTable(corpus: readonly HostileCase[]): string {
    const rows = corpus.map((c) => `| ${c.layer} | ${c.name} | ${c.attempt} | ${c.outcome} |`);
    return [
        "# Hostile input: what the edge does",
        "",
        "Each row is a test in `test/hostile.e2e.test.ts`, named `<layer>: <case> → <outcome>`, run",
        "against the real local stack (Debian's NGINX, the backend app, real TLS). After every case",
        "a fresh legitimate WebSocket is opened and must echo. Generated from `test/hostile/corpus.ts`",
        "by `npm run docs:hostile`; a test fails when this file is stale.",
        "",
        "| Layer | Case | Attempt | Outcome |",
        "|---|---|---|---|",
        ...rows,
        "",
    ].join("\n");
}

if (require.main === module) {
    const { writeFileSync } = require("node:fs") as typeof import("node:fs");
    const { join } = require("node:path") as typeof import("node:path");
    const { hostileCorpus } = require("./corpus") as typeof import("./corpus");
    writeFileSync(join(__dirname, "..", "..", "docs", "hostile-input.md"), outcomeTable(hostileCorpus));
}
