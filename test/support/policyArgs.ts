import type {
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
} from "@pulumi/policy";

const emptyOptions = {
    protect: false,
    ignoreChanges: [],
    aliases: [],
    customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    additionalSecretOutputs: [],
};

/** Thrown by `notApplicable()`, as CrossGuard's own runtime does; it means "no verdict", not a violation. */
class NotApplicable extends Error {}
const notApplicable = (reason?: string): never => {
    throw new NotApplicable(reason);
};

const isTypeOf = (type: string) => (resourceClass: any) =>
    typeof resourceClass.isInstance === "function" && resourceClass.isInstance({ __pulumiType: type }) === true;

/** The args CrossGuard passes a resource policy, for one resource of `type` with `props`. */
export function resourceArgs(type: string, props: Record<string, any>, config: Record<string, unknown> = {}): ResourceValidationArgs {
    return {
        type,
        props,
        urn: `urn:pulumi:test::wss-edge::${type}::subject`,
        name: "subject",
        opts: emptyOptions,
        isType: isTypeOf(type),
        asType: ((cls: any) => (isTypeOf(type)(cls) ? props : undefined)) as ResourceValidationArgs["asType"],
        getConfig: <T>() => config as T,
        stackTags: new Map<string, string>(),
        notApplicable,
    } as unknown as ResourceValidationArgs;
}

export interface StackResource {
    readonly type: string;
    readonly name: string;
    readonly props: Record<string, any>;
    readonly propertyDependencies?: Record<string, StackResource[]>;
}

/** The args CrossGuard passes a stack policy, for a stack made of `resources`. */
export function stackArgs(resources: StackResource[]): StackValidationArgs {
    const toPolicyResource = (r: StackResource): PolicyResource =>
        ({
            type: r.type,
            name: r.name,
            props: r.props,
            urn: `urn:pulumi:test::wss-edge::${r.type}::${r.name}`,
            opts: emptyOptions,
            dependencies: [],
            propertyDependencies: Object.fromEntries(
                Object.entries(r.propertyDependencies ?? {}).map(([k, deps]) => [k, deps.map(toPolicyResource)]),
            ),
            isType: isTypeOf(r.type),
            asType: ((cls: any) => (isTypeOf(r.type)(cls) ? r.props : undefined)) as PolicyResource["asType"],
        }) as PolicyResource;
    return {
        resources: resources.map(toPolicyResource),
        getConfig: <T>() => ({}) as T,
        stackTags: new Map<string, string>(),
        notApplicable,
    } as unknown as StackValidationArgs;
}

/** Runs one policy and returns the messages it reported. */
export async function violationsOf(
    policy: ResourceValidationPolicy | StackValidationPolicy,
    args: ResourceValidationArgs | StackValidationArgs,
): Promise<string[]> {
    const found: string[] = [];
    const report = (message: string) => found.push(message);
    // As the policy server does (@pulumi/policy server.js): each validation of a resource policy
    // runs on its own, and one that finds the resource not applicable leaves the others to run.
    const validations =
        "validateStack" in policy && policy.validateStack
            ? [() => policy.validateStack(args as StackValidationArgs, report)]
            : "validateResource" in policy && policy.validateResource
              ? (Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource]).map(
                    (validate) => () => validate(args as ResourceValidationArgs, report),
                )
              : [];
    for (const validate of validations) {
        try {
            await validate();
        } catch (error) {
            if (!(error instanceof NotApplicable)) throw error;
        }
    }
    return found;
}
