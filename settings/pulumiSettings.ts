import * as pulumi from "@pulumi/pulumi";
import { EdgeSettings, RawSettings, validateSettings } from "./edgeSettings";

/**
 * Reads this project's keys from the stack configuration and validates them. Values are
 * read raw (secrets included) only to validate them; the PKI wraps the secret ones in
 * `pulumi.secret` before any resource sees them.
 */
export function loadEdgeSettings(): EdgeSettings {
    const namespace = pulumi.getProject();
    const raw: Record<string, string> = {};
    for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
        const [ns, key] = fullKey.split(":", 2);
        if (ns === namespace) raw[key] = value;
    }
    return validateSettings(raw as RawSettings, namespace);
}
