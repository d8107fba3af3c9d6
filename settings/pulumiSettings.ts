import * as pulumi from "@pulumi/pulumi";
import { type RawSettings, SettingsError, validateSettings } from "./edgeSettings";
import { type SettingKey, type StackSettings, secretSettingKeys } from "./settingsTable";

/** Whether the stack holds `key` encrypted. Exported by the runtime, not declared in its types. */
const isConfigSecret = (require("@pulumi/pulumi/runtime/config") as { isConfigSecret: (key: string) => boolean }).isConfigSecret;

/**
 * Reads this project's keys from the stack configuration and validates them. Values are
 * read raw (secrets included) only to validate them; the PKI wraps the secret ones in
 * `pulumi.secret` before any resource sees them. A secret key set in plain text is refused:
 * it would sit unencrypted in the stack file (Pulumi.yaml cannot declare it secret, see there).
 */
export function loadStackSettings(): StackSettings {
    const namespace = pulumi.getProject();
    const raw: Record<string, string> = {};
    for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
        const [ns, key] = fullKey.split(":", 2);
        if (ns === namespace) raw[key] = value;
    }
    const plainSecrets = [...secretSettingKeys].filter(
        (key) => raw[key] !== undefined && raw[key] !== "" && !isConfigSecret(`${namespace}:${key}`),
    );
    if (plainSecrets.length > 0) {
        throw new SettingsError(
            namespace,
            plainSecrets.map((key: SettingKey) => ({
                key,
                value: "[secret]",
                rule: `is stored in plain text; set it with \`pulumi config set --secret ${key} …\``,
            })),
        );
    }
    return validateSettings(raw as RawSettings, namespace);
}
