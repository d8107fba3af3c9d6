/**
 * URNs and aliases as the Pulumi engine computes them, for what a program registered under the
 * mocks: which resources of an earlier state a run would find again (and keep), and which it
 * would create and delete. Read at pulumi/pulumi 1b594989:
 *
 * - sdk/go/common/resource/urn/urn.go, New: a URN's type is the parent's whole qualified type,
 *   `$`, and the resource's own type; the root stack's type is left out. (The mocks name only the
 *   parent's own type: @pulumi/pulumi runtime/mocks.js, newUrn.)
 * - pkg/resource/deploy/step_generator.go, getOldResource: the state is searched by the URN first,
 *   then by each alias; a resource found by an alias records it as its parent's alias for its
 *   own children (`sg.aliases[urn] = urnOrAlias`).
 * - generateAliases and collapseAliasToUrn: an alias spec's empty name or type is the
 *   resource's own; its parent is the resource's parent (or that parent's recorded alias), none
 *   when `noParent` or when it is the root stack. inheritedChildAlias: every child of an aliased
 *   parent also gets the alias under the parent's old URN, with the parent's name swapped in
 *   where its own name begins with the parent's.
 */
import type { AliasSpec, RegisteredResource } from "./pulumiProgram";

const prefix = "urn:pulumi:dev::wss-edge::";
const rootStackType = "pulumi:pulumi:Stack";

const qualifiedTypeOf = (urn: string) => urn.slice(prefix.length).split("::")[0];
const nameOf = (urn: string) => urn.slice(prefix.length).split("::").slice(1).join("::");

function newUrn(parentUrn: string, type: string, name: string): string {
    const parentType = parentUrn === "" ? "" : qualifiedTypeOf(parentUrn);
    return `${prefix}${parentType !== "" && parentType !== rootStackType ? `${parentType}$` : ""}${type}::${name}`;
}

/** Every registration's URN as the engine makes it, by the mocks' URN (which must be unique). */
export function engineUrns(resources: readonly RegisteredResource[]): Map<string, string> {
    const byMockUrn = new Map(resources.map((r) => [r.urn, r]));
    if (byMockUrn.size !== resources.length) throw new Error("two registrations share a mock URN: the parents cannot be told apart");
    const urns = new Map<string, string>();
    const urnOf = (r: RegisteredResource): string => {
        const known = urns.get(r.urn);
        if (known) return known;
        const parent = r.parent === "" ? undefined : byMockUrn.get(r.parent);
        if (r.parent !== "" && parent === undefined) throw new Error(`${r.urn}: parent ${r.parent} was not registered`);
        const urn = newUrn(parent ? urnOf(parent) : "", r.type, r.name);
        urns.set(r.urn, urn);
        return urn;
    };
    for (const r of resources) urnOf(r);
    return urns;
}

/**
 * What a run of `resources` does to a state holding `olds`: which old URN each resource is found
 * at (its own, or an alias's), which it would create, and which olds no resource claims (deleted).
 */
export function matchState(resources: readonly RegisteredResource[], olds: ReadonlySet<string>) {
    const urns = engineUrns(resources);
    const byMockUrn = new Map(resources.map((r) => [r.urn, r]));
    /** sg.aliases: a resource found by an alias → the old URN it was found at. */
    const foundAt = new Map<string, string>();
    const claimed = new Map<string, string>();
    const created: string[] = [];
    // Parents register before their children, as in a program.
    for (const r of resources) {
        const urn = urns.get(r.urn) as string;
        const parentUrn = r.parent === "" ? "" : (urns.get(r.parent) as string);
        const candidates = [urn, ...aliasesOf(r, urn, parentUrn, foundAt, (mock) => urns.get(mock) ?? mock, byMockUrn)];
        const old = candidates.find((c) => olds.has(c));
        if (old === undefined) {
            created.push(urn);
            continue;
        }
        if (claimed.has(old)) throw new Error(`${urn} and ${claimed.get(old)} both claim ${old}`);
        claimed.set(old, urn);
        if (old !== urn) foundAt.set(urn, old);
    }
    const deleted = [...olds].filter((old) => !claimed.has(old));
    return { urns, claimed, created, deleted };
}

function aliasesOf(
    r: RegisteredResource,
    urn: string,
    parentUrn: string,
    foundAt: ReadonlyMap<string, string>,
    toEngineUrn: (mockUrn: string) => string,
    byMockUrn: ReadonlyMap<string, RegisteredResource>,
): string[] {
    const collapse = (alias: AliasSpec): string => {
        const name = alias.name || r.name;
        const type = alias.type || r.type;
        let parent = alias.parentUrn === "" ? parentUrn : toEngineUrn(alias.parentUrn);
        if (alias.parentUrn !== "") parent = foundAt.get(parent) ?? parent;
        if (alias.parentUrn !== "" && !byMockUrn.has(alias.parentUrn) && !alias.parentUrn.includes(rootStackType))
            throw new Error(`${urn}: alias parent ${alias.parentUrn} is not a registered resource`);
        if (alias.noParent || (parent !== "" && qualifiedTypeOf(parent) === rootStackType)) parent = "";
        return newUrn(parent, type, name);
    };
    const result = new Set(r.aliases.map(collapse));
    const parentAlias = foundAt.get(parentUrn);
    if (parentAlias !== undefined) {
        const inherited = (type: string, name: string) => {
            const parentName = nameOf(parentUrn);
            const aliasName = name.startsWith(parentName) ? nameOf(parentAlias) + name.slice(parentName.length) : name;
            return newUrn(parentAlias, type, aliasName);
        };
        result.add(inherited(r.type, r.name));
        for (const alias of r.aliases) {
            const collapsed = collapse(alias);
            result.add(inherited(qualifiedTypeOf(collapsed).split("$").pop() as string, nameOf(collapsed)));
        }
    }
    return [...result];
}
