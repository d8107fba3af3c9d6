/**
 * docs/configuration.md, rendered from the settings table (`npm run docs:configuration`): one row
 * per setting, with its scope, kind, bounds or choices, default and description. A test fails
 * when the page is stale.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type SettingDefinition, settingKeys, settingsTable } from "./settingsTable";

/** Text for one table cell: pipes escaped, and angle brackets too, so `query:<name>` is not read as HTML. */
function cell(text: string): string {
    return text.replace(/\|/g, "\\|").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const code = (text: string): string => `\`${text}\``;

/** What kind of value a setting takes, with its bounds, choices or rule. */
function kindOf(setting: SettingDefinition): string {
    switch (setting.kind) {
        case "integer":
            return `integer, ${setting.min} to ${setting.max}`;
        case "boolean":
            return "boolean";
        case "choice":
            return `one of ${setting.choices.map(code).join(", ")}`;
        case "instanceType":
            return "EC2 instance type";
        case "dnsName":
            return "DNS name";
        case "imageReference":
            return "container image reference";
        case "cidrList":
            return setting.allowWorld ? "list of CIDR blocks (IPv4 or IPv6)" : "list of CIDR blocks (IPv4 or IPv6), never /0";
        case "pattern":
            return `text: ${setting.rule}`;
        case "originList":
            return `list of web origins, or ${code('["*"]')}`;
        case "resourceId":
            return setting.list ? `list of IDs such as ${code(setting.example)}` : `ID such as ${code(setting.example)}`;
        case "pem":
            return setting.pem === "certificate" ? "PEM certificate chain, secret" : "PEM private key, secret";
    }
}

/** Its default as a value, or what stands in for one. */
function defaultOf(setting: SettingDefinition): string {
    if (setting.kind === "pem") return "none (secret)";
    if (setting.default === undefined) return "**required**";
    return code(JSON.stringify(setting.default));
}

/** The whole page. */
export function configurationReference(): string {
    const rows = settingKeys.map((key) => {
        const setting: SettingDefinition = settingsTable[key];
        return `| ${[code(key), setting.scope, kindOf(setting), defaultOf(setting), setting.description].map(cell).join(" | ")} |`;
    });
    return [
        "# Configuration",
        "",
        "Every setting of the edge, generated from `settings/settingsTable.ts` by `npm run docs:configuration`;",
        "edit the table, not this page.",
        "",
        "Where settings are set: on AWS, with `pulumi config set wss-edge:<key> <value>` (the two PEM",
        "settings with `--secret`); for the local stack and the VM twin, with `--set key=value`, which",
        "takes the `edge` settings only. Scope `edge` is how the edge behaves, and every placement takes it;",
        "scope `aws` is where and on what the AWS stack runs, and only Pulumi takes it. What the settings",
        "do on AWS, with measurements, is in [aws.md](aws.md); on this machine, in [local.md](local.md).",
        "",
        "| Setting | Scope | Kind | Default | Description |",
        "|---|---|---|---|---|",
        ...rows,
        "",
    ].join("\n");
}

if (require.main === module) {
    const path = join(__dirname, "..", "docs", "configuration.md");
    writeFileSync(path, configurationReference());
    console.log(`wrote ${path}`);
}
