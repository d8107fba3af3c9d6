/**
 * The Pulumi CLI's project-config check, which runs before any program does (`pulumi preview`,
 * `pulumi up`). Transcribed from pulumi/pulumi `sdk/go/common/workspace` (`mergeConfig`,
 * `validateStackConfigValue`, `ValidateConfigValue`, tested there by
 * `TestStackConfigErrorsWhenMissingStackValueForConfigTypeWithNoDefault`):
 *
 * 1. A key the project declares, in the project's namespace, that the stack does not set and
 *    that has no `default` (or `value`): "Stack '<stack>' is missing configuration value '<key>'".
 * 2. A declared key absent from the stack takes its default, as a plain value.
 * 3. Then every declared, typed key is checked: a `secret: true` key whose value is not
 *    encrypted fails ("must be encrypted as it's secret") — a default included, so a secret
 *    key with a default fails on every stack that doesn't set it; and the value must match
 *    `type` (integers may be strings that parse; booleans "true"/"false"; arrays item by item).
 *
 * Keys the stack sets that the project does not declare are not checked.
 */

export interface ProjectConfigType {
    readonly type?: "string" | "integer" | "boolean" | "array";
    readonly items?: { readonly type: string };
    readonly default?: unknown;
    readonly value?: unknown;
    readonly secret?: boolean;
}

/** A stack file's value: a plain YAML value, or `{ secure: "v1:…" }` for an encrypted one. */
type StackValue = unknown;

const isSecure = (value: StackValue) =>
    value !== null && typeof value === "object" && !Array.isArray(value) && "secure" in (value as object);

/** The CLI's error for this stack, or undefined when `pulumi preview` would get past it. */
export function projectConfigError(
    projectName: string,
    projectConfig: Readonly<Record<string, ProjectConfigType>>,
    stackName: string,
    stackConfig: Readonly<Record<string, StackValue>>,
): string | undefined {
    const stackValues = new Map<string, StackValue>();
    for (const [key, value] of Object.entries(stackConfig ?? {})) {
        stackValues.set(key.includes(":") ? key : `${projectName}:${key}`, value);
    }

    const missing: string[] = [];
    const keys = Object.keys(projectConfig).sort();
    for (const key of keys) {
        const declared = projectConfig[key];
        const fullKey = key.includes(":") ? key : `${projectName}:${key}`;
        if (stackValues.has(fullKey)) continue;
        const hasDefault = declared.default !== undefined || declared.value !== undefined;
        if (!hasDefault && fullKey.startsWith(`${projectName}:`)) missing.push(key);
        else if (hasDefault) stackValues.set(fullKey, declared.default ?? declared.value);
    }
    if (missing.length > 0) {
        const values = missing.length === 1 ? "value" : "values";
        const listed =
            missing.length === 1
                ? `'${missing[0]}'`
                : missing.map((k, i) => (i === missing.length - 1 ? `and '${k}'` : `'${k}'`)).join(missing.length === 2 ? " " : ", ");
        return `Stack '${stackName}' is missing configuration ${values} ${listed}`;
    }

    for (const key of keys) {
        const declared = projectConfig[key];
        if (declared.type === undefined) continue;
        const value = stackValues.get(key.includes(":") ? key : `${projectName}:${key}`);
        if (value === undefined) continue;
        if (declared.secret && !isSecure(value))
            return `Stack '${stackName}' with configuration key '${key}' must be encrypted as it's secret`;
        // An encrypted value is checked after decryption, which needs the stack's key; not here.
        if (isSecure(value)) continue;
        if (!matchesType(declared.type, declared.items, asConfigValue(value))) {
            const typeName = declared.items ? `array<${declared.items.type}>` : declared.type;
            return `Stack '${stackName}' with configuration key '${key}' must be of type '${typeName}'`;
        }
    }
    return undefined;
}

/** Scalars reach the check as their text (YAML 3 becomes "3"); lists and maps as parsed JSON. */
function asConfigValue(value: StackValue): unknown {
    return value !== null && typeof value === "object" ? value : String(value);
}

function matchesType(type: string, items: { readonly type: string } | undefined, value: unknown): boolean {
    if (type === "string") return typeof value === "string";
    if (type === "integer")
        return (typeof value === "number" && Number.isInteger(value)) || (typeof value === "string" && /^[+-]?[0-9]+$/.test(value));
    if (type === "boolean") return value === "true" || value === "false" || typeof value === "boolean";
    if (!Array.isArray(value) || items === undefined) return false;
    return value.every((item) => matchesType(items.type, undefined, item));
}
