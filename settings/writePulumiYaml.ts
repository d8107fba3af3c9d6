/**
 * Writes Pulumi.yaml's `config:` block from the settings table (`npm run settings:pulumi-yaml`).
 * Everything above `config:` is kept as it is.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { pulumiConfigBlock } from "./settingsTable";

const path = join(__dirname, "..", "Pulumi.yaml");
const text = readFileSync(path, "utf8");
const blockStart = [text.search(/^# Generated from settings\//m), text.search(/^config:/m)].filter((i) => i >= 0);
const head = text.slice(0, blockStart.length > 0 ? Math.min(...blockStart) : text.length);
const note = [
    "# Generated from settings/settingsTable.ts by `npm run settings:pulumi-yaml`; edit the table, not this block.",
    "# tlsCertificate and tlsPrivateKey (your own certificate for domainName) are read too, but not",
    "# declared here: the CLI requires every declared key without a default in every stack, and a",
    "# secret key cannot have a (plain) default. Set both with `pulumi config set --secret`; the",
    "# program refuses them in plain text.",
].join("\n");
writeFileSync(path, `${head.trimEnd()}\n${note}\n${stringify({ config: pulumiConfigBlock() }, { lineWidth: 0 })}`);
console.log(`wrote ${path}`);
