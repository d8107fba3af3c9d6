// The documentation holds together: the configuration page is the settings table's, the README
// stays a short front page, every relative link leads to a file, and every page speaks in the
// project's voice (no issue numbers, no first person).
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { configurationReference } from "../settings/configurationReference";

const root = join(__dirname, "..");
const docs = join(root, "docs");
const pages = [
    join(root, "README.md"),
    ...readdirSync(docs)
        .filter((name) => name.endsWith(".md"))
        .map((name) => join(docs, name)),
];
const read = (path: string): string => readFileSync(path, "utf8");
const named = (path: string): string => relative(root, path);

/** The page without its fenced code blocks and inline code: the prose a reader reads. */
function prose(text: string): string {
    return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "").replace(/`[^`\n]*`/g, "");
}

/** Targets of the page's markdown links and images, outside code. */
function linkTargets(text: string): string[] {
    return [...prose(text).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1]);
}

/** "issue 17", "issues 3", "#17": a tracker's number, not a status code or a hex literal. */
const issueNumber = /\bissues?\s*#?\d{1,4}\b|(?<![\w&])#\d{1,4}\b/i;
const firstPerson = /\bI\b/;

describe("documentation", () => {
    it("has docs/configuration.md as the settings table renders it", () => {
        assert.equal(
            read(join(docs, "configuration.md")),
            configurationReference(),
            "docs/configuration.md is stale: run `npm run docs:configuration`",
        );
    });

    it("keeps README.md to 200 lines at most", () => {
        const lines = read(join(root, "README.md")).replace(/\n$/, "").split("\n").length;
        assert.ok(lines <= 200, `README.md has ${lines} lines; move what is not a newcomer's first read into docs/`);
    });

    it("links only to files that exist", () => {
        const broken: string[] = [];
        for (const page of pages) {
            for (const target of linkTargets(read(page))) {
                if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) continue;
                const path = decodeURIComponent(target.split("#")[0]);
                if (!existsSync(resolve(dirname(page), path))) broken.push(`${named(page)}: ${target}`);
            }
        }
        assert.deepEqual(broken, [], "relative links to files that do not exist");
    });

    it("cites no issue numbers and is not written in the first person", () => {
        const problems: string[] = [];
        for (const page of pages) {
            const text = read(page);
            const issue = issueNumber.exec(text);
            if (issue) problems.push(`${named(page)}: issue number "${issue[0]}"`);
            const person = firstPerson.exec(prose(text));
            if (person)
                problems.push(
                    `${named(page)}: first person near "${prose(text).slice(Math.max(0, person.index - 30), person.index + 30)}"`,
                );
        }
        assert.deepEqual(problems, []);
    });

    it("tells an issue number from what only looks like one", () => {
        for (const text of ["see issue 17", "issue #17's targets", "fixed in #17.", "(#3)", "Issues 12"])
            assert.match(text, issueNumber, text);
        for (const text of [
            "0x11ec",
            "HTTP 404",
            "&#39;",
            "a1#2b",
            "[anchor](#origin-policy)",
            "## 1. First",
            "3 × server",
            "issued 17 certificates",
        ]) {
            assert.doesNotMatch(text, issueNumber, text);
        }
    });
});
