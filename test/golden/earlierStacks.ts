/**
 * What stacks made by an earlier release of this program hold: for three shapes, each resource's
 * URN as the engine makes it and a digest of its inputs, kept as test/golden/earlierStacks.json.
 * component.test.ts runs today's program against it: every resource must be found again (by URN
 * or alias) with the same inputs, so upgrading such a stack changes nothing in the cloud.
 *
 *   git worktree add /tmp/earlier <commit> && ln -s "$PWD/node_modules" /tmp/earlier/node_modules
 *   npx tsx test/golden/earlierStacks.ts /tmp/earlier/index.ts <commit>
 *
 * It was made from 0049b79, the last release before the WssEdge component.
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { engineUrns } from "../support/engineUrns";
import { type RegisteredResource, runEdgeProgram } from "../support/pulumiProgram";

export const earlierStacksPath = join(__dirname, "earlierStacks.json");

/** The shapes kept: one VM, load-balanced with the redirect, and the user's own image with an alarm email. */
export const earlierShapes: Record<string, Record<string, string>> = {
    "single-vm": {},
    "load-balanced": { proxyCount: "3", httpRedirect: "true" },
    "own-image": { backendImage: "ghcr.io/acme/ws:1", httpRedirect: "true", alarmEmail: "ops@example.com" },
};

export interface EarlierStacks {
    readonly commit: string;
    readonly shapes: typeof earlierShapes;
    /** Per shape: URN → digest of the resource's inputs. */
    readonly state: Record<string, Record<string, string>>;
}

export const inputsDigest = (resource: RegisteredResource): string =>
    createHash("sha256").update(JSON.stringify(resource.inputs)).digest("hex");

if (require.main === module) {
    const [program, commit] = process.argv.slice(2);
    if (!program || !commit) {
        console.error("usage: tsx test/golden/earlierStacks.ts <earlier checkout>/index.ts <commit>");
        process.exit(2);
    }
    (async () => {
        const state: Record<string, Record<string, string>> = {};
        for (const [shape, config] of Object.entries(earlierShapes)) {
            const { resources } = await runEdgeProgram(config, { program });
            const urns = engineUrns(resources);
            state[shape] = Object.fromEntries(resources.map((r) => [urns.get(r.urn) as string, inputsDigest(r)]).sort());
        }
        const golden: EarlierStacks = { commit, shapes: earlierShapes, state };
        writeFileSync(earlierStacksPath, `${JSON.stringify(golden, null, 1)}\n`);
        console.log(`wrote ${earlierStacksPath}`);
    })();
}
