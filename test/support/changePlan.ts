/**
 * What `pulumi up` would do between two runs of the program, from what each run registered and
 * the rules of the providers this stack uses. Mocks cannot run a provider's diff, so its rules
 * are written down here, as read in each provider's source:
 *
 * - pulumi-command (provider/pkg/provider/common/inputs.go, local/commandController.go):
 *   `triggers` is the only `replaceOnChanges` input. A change to it replaces the resource, which
 *   runs `create`. Any other change (environment, create) is an update, and `Update` runs
 *   `update` or, when there is none (as here), `create` again.
 * - S3 objects (terraform-provider-aws internal/service/s3/object.go): `bucket` and `key` are
 *   ForceNew; new content is uploaded again under the same key. SSM documents
 *   (internal/service/ssm/document.go): only `name` is ForceNew; new content is a new version,
 *   made the default. An Auto Scaling group's launch template version is an in-place update that
 *   starts an instance refresh (internal/service/autoscaling/group.go); a launch template's
 *   changes are new versions. docs/engine-rules.md quotes each.
 * - AWS (terraform-provider-aws, ForceNew attributes): an instance is replaced when its AMI, subnet,
 *   key pair or public-IP setting changes, or its user data when `userDataReplaceOnChange` is on;
 *   a new instance type, or user data without that flag, is applied in place by stopping and
 *   starting it (the installed @pulumi/aws documents both on `Instance`). Every attribute of an
 *   EIP association is ForceNew, `allow_reassociation` is passed to AssociateAddress, and its
 *   delete ignores InvalidAssociationID.NotFound (internal/service/ec2/ec2_eip_association.go):
 *   so a replacement VM can take the address before the old association is deleted. A role
 *   policy's role, a policy attachment and an ECR lifecycle policy's repository are ForceNew too.
 * - TLS (terraform-provider-tls): every input of a key, request or certificate is ForceNew; a
 *   certificate inside its early-renewal window is replaced on the next `up`.
 * - docker (pulumi-docker Image): a change to the build or the image name builds and pushes anew.
 * - Load balancing (terraform-provider-aws internal/service/elbv2). Read in the source:
 *   target_group.go — port, protocol, protocol version, IP address type, target type, VPC and
 *   name are ForceNew, deregistration_delay takes 0–3600, health checks 5–300 s apart with
 *   thresholds 2–10. From the provider's docs, not its source: a load balancer's type, scheme and
 *   name, and a listener's load balancer, are ForceNew.
 * - DNS and endpoints (terraform-provider-aws v5 source, read at 1a5174b1): a Route 53 record's
 *   `name` and `zone_id` are ForceNew, its records, alias and TTL are UPSERTed in place
 *   (internal/service/route53/record.go); a VPC endpoint's service name, type and VPC are
 *   ForceNew, its subnets, route tables and security groups modified in place
 *   (internal/service/ec2/vpc_endpoint.go). An Auto Scaling group's subnets
 *   (`vpc_zone_identifier`) change in place and start no instance refresh: the proxies stay
 *   where they are (internal/service/autoscaling/group.go).
 * - CloudWatch alarms (terraform-provider-aws `resourceAwsCloudWatchMetricAlarm`): `alarm_name` is
 *   the one ForceNew attribute; a new threshold, dimension or action is a PutMetricAlarm in place.
 * - ACM (terraform-provider-aws internal/service/acm/certificate.go, `resourceCertificateUpdate`):
 *   a new body, chain or key of an imported certificate is imported again with ImportCertificate
 *   under the same ARN, in place.
 * - The ACME order (components/acmeCertificate.ts, the stack's own dynamic provider): a change to
 *   any input replaces it; the engine's dynamic-provider host does not replace a resource because
 *   its serialized provider changed (@pulumi/pulumi cmd/dynamic-provider, `diff`). Its renewal is a
 *   replacement its `diff` asks for once the renewal time has passed, which `replaced` stands for.
 * - Refresh (docs/engine-rules.md, e): `up` refreshes first only with `--refresh` or Pulumi.yaml's
 *   `options.refresh: always`, which this project sets. A refresh drops from the state a resource
 *   its provider no longer finds (a terminated VM), so the update creates it anew, with no delete
 *   of the old; without a refresh the update diffs the program against the state alone and a lost
 *   resource goes unnoticed.
 * - The engine: `ignoreChanges` paths are not diffed; a replacement creates the new resource
 *   before it deletes the old one (no `deleteBeforeReplace` here); dependents see the new ID and
 *   outputs, which `planBetween` feeds back by running the program again. In what order the steps
 *   run, and which at the same time, is engineOrder.ts's.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { parse as parseYaml } from "yaml";
import { type RegisteredResource, type RunOptions, runEdgeProgram } from "./pulumiProgram";

export type Action = "same" | "create" | "delete" | "replace" | "update" | "update (stop and start)";

/** Inputs whose change replaces the resource, by type; `*` means every input. */
const replacingInputs: Record<string, readonly string[]> = {
    "command:local:Command": ["triggers"],
    "aws:ec2/instance:Instance": ["ami", "subnetId", "keyName", "associatePublicIpAddress", "availabilityZone", "privateIp"],
    "aws:s3/bucketObjectv2:BucketObjectv2": ["bucket", "key"],
    "aws:s3/bucket:Bucket": ["bucket", "bucketPrefix", "objectLockEnabled"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": ["bucket"],
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ["bucket"],
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ["bucket"],
    "aws:s3/bucketPolicy:BucketPolicy": ["bucket"],
    "aws:kms/key:Key": ["keySpec", "keyUsage", "customerMasterKeySpec", "multiRegion"],
    "aws:ssm/document:Document": ["name"],
    "aws:ec2/launchTemplate:LaunchTemplate": ["name", "namePrefix"],
    "aws:autoscaling/group:Group": ["name", "namePrefix"],
    "aws:iam/role:Role": ["name", "namePrefix"],
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ["*"],
    "aws:ec2/eipAssociation:EipAssociation": ["*"],
    "aws:ec2/eip:Eip": ["domain"],
    "aws:ec2/securityGroup:SecurityGroup": ["vpcId", "description", "name"],
    "aws:iam/rolePolicy:RolePolicy": ["role", "name"],
    "aws:iam/instanceProfile:InstanceProfile": ["name"],
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": ["repository"],
    "aws:ecr/repository:Repository": ["name"],
    "tls:index/privateKey:PrivateKey": ["*"],
    "tls:index/certRequest:CertRequest": ["*"],
    "tls:index/locallySignedCert:LocallySignedCert": ["*"],
    "tls:index/selfSignedCert:SelfSignedCert": ["*"],
    "docker:index/image:Image": ["build", "imageName"],
    "aws:lb/targetGroup:TargetGroup": ["port", "protocol", "protocolVersion", "ipAddressType", "vpcId", "targetType", "name", "namePrefix"],
    "aws:lb/loadBalancer:LoadBalancer": ["loadBalancerType", "internal", "name", "namePrefix"],
    "aws:lb/listener:Listener": ["loadBalancerArn"],
    "aws:route53/record:Record": ["name", "zoneId"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["serviceName", "vpcEndpointType", "vpcId"],
    // Only the alarm's name forces a new alarm; its metric, threshold and actions change in place.
    "aws:cloudwatch/metricAlarm:MetricAlarm": ["name"],
    // The stack's own dynamic provider (components/acmeCertificate.ts): any input is a new order.
    "pulumi-nodejs:dynamic/wss-edge:AcmeOrder": ["domainName", "directoryUrl", "hostedZoneId", "accountKeyPem"],
};

/** Inputs an instance applies in place only by stopping and starting (every socket on it closes). */
const stopStartInputs = ["instanceType", "userData"];

export type Plan = ReadonlyMap<string, Action>;

/** Each cloud resource's action, keyed `type::name`; components are left out. */
export function planChanges(before: readonly RegisteredResource[], after: readonly RegisteredResource[]): Plan {
    const key = (r: RegisteredResource) => `${r.type}::${r.name}`;
    const old = new Map(before.filter(isCloudResource).map((r) => [key(r), r]));
    const plan = new Map<string, Action>();
    for (const resource of after.filter(isCloudResource)) {
        const previous = old.get(key(resource));
        old.delete(key(resource));
        plan.set(key(resource), previous === undefined ? "create" : actionFor(previous, resource));
    }
    for (const gone of old.keys()) plan.set(gone, "delete");
    return plan;
}

function actionFor(before: RegisteredResource, after: RegisteredResource): Action {
    const ignored = new Set(after.options.ignoreChanges);
    const changed = [...new Set([...Object.keys(before.inputs), ...Object.keys(after.inputs)])].filter(
        (input) => !ignored.has(input) && !isDeepStrictEqual(comparable(before.inputs[input]), comparable(after.inputs[input])),
    );
    if (changed.length === 0) return "same";
    const replacing = replacingInputs[after.type] ?? [];
    const replaceOnChanges = [...replacing, ...after.options.replaceOnChanges];
    if (after.type === "aws:ec2/instance:Instance" && after.inputs.userDataReplaceOnChange) replaceOnChanges.push("userData");
    // A Network Load Balancer takes more subnets in place; any other change of them replaces it
    // (terraform-provider-aws internal/service/elbv2/load_balancer.go, customizeDiffLoadBalancerNLB:
    // "In-place increase in number of subnets only").
    if (
        after.type === "aws:lb/loadBalancer:LoadBalancer" &&
        after.inputs.loadBalancerType === "network" &&
        changed.includes("subnets") &&
        (after.inputs.subnets ?? []).length <= (before.inputs.subnets ?? []).length
    )
        return "replace";
    if (replaceOnChanges.includes("*") || changed.some((input) => replaceOnChanges.includes(input))) return "replace";
    if (after.type === "aws:ec2/instance:Instance" && changed.some((input) => stopStartInputs.includes(input)))
        return "update (stop and start)";
    return "update";
}

/** Assets compare by path (under mocks, a promise of it); a change of their content shows in their triggers. */
function comparable(value: unknown): unknown {
    if (value !== null && typeof value === "object" && (value as { __pulumiAsset?: boolean }).__pulumiAsset)
        return String((value as { path?: unknown }).path);
    return value;
}

function isCloudResource(resource: RegisteredResource): boolean {
    return !resource.type.startsWith("wss-edge:") && !resource.type.startsWith("pulumi:");
}

/** The `type::name` key of a resource, as plans and `replaced` name them. */
export const resourceKey = (type: string, name: string) => `${type}::${name}`;

/** The resources given an action, as names, sorted. */
export function withAction(plan: Plan, ...actions: Action[]): string[] {
    return [...plan.entries()]
        .filter(([, action]) => actions.includes(action))
        .map(([key]) => key.split("::")[1])
        .sort();
}

export interface ProgramState {
    readonly config: Record<string, string>;
    readonly options?: Omit<RunOptions, "registered" | "replaced">;
    /** What the update replaces though the program did not change it (`pulumi up --replace`, a renewed certificate), as `type::name`. */
    readonly replaced?: readonly string[];
    /** What was lost from the cloud behind Pulumi's back since the last update (a terminated VM), as `type::name`. */
    readonly lost?: readonly string[];
    /** `pulumi up --refresh=false`: the update skips the refresh Pulumi.yaml asks for. */
    readonly skipRefresh?: boolean;
}

/** Whether a plain `pulumi up` refreshes first: Pulumi.yaml's `options.refresh`, as the CLI reads it. */
export const upRefreshes: boolean =
    parseYaml(readFileSync(join(__dirname, "..", "..", "Pulumi.yaml"), "utf8"))?.options?.refresh === "always";

/**
 * The plan from `before` to `after`, with what a replacement does to its dependents: the program
 * runs again, the replaced resources now reporting new IDs and outputs, until no new replacement
 * follows (at most five rounds).
 */
export async function planBetween(before: ProgramState, after: ProgramState): Promise<Plan> {
    return (await changeBetween(before, after)).plan;
}

/** What each run registered, and the plan between them (as planBetween). */
export interface Change {
    readonly before: readonly RegisteredResource[];
    readonly after: readonly RegisteredResource[];
    /** Resources (`type::name`) the update replaces: their new versions report new IDs and outputs in `after`. */
    readonly replaced: ReadonlySet<string>;
    readonly plan: Plan;
}

/** The program's registrations for a state, run once per state: a run is a pure function of its config and options. */
const registrations = new Map<string, Promise<readonly RegisteredResource[]>>();
function registered(state: ProgramState): Promise<readonly RegisteredResource[]> {
    const key = JSON.stringify([state.config, state.options ?? {}]);
    let run = registrations.get(key);
    if (!run) {
        run = runEdgeProgram(state.config, state.options).then((r) => r.resources);
        registrations.set(key, run);
    }
    return run;
}

export async function changeBetween(before: ProgramState, after: ProgramState): Promise<Change> {
    // What a refresh finds gone leaves the state before the update runs; unrefreshed, the state still holds it.
    const lost = new Set(upRefreshes && !after.skipRefresh ? (after.lost ?? []) : []);
    const first = { resources: (await registered(before)).filter((r) => !lost.has(resourceKey(r.type, r.name))) };
    const replaced = new Set([...(after.replaced ?? []), ...lost]);
    for (let round = 0; round < 5; round++) {
        const second = await runEdgeProgram(after.config, { ...after.options, replaced: [...replaced] });
        const plan = new Map(planChanges(first.resources, second.resources));
        for (const [key] of plan) if (after.replaced?.includes(key)) plan.set(key, "replace");
        const more = [...plan.entries()].filter(([key, action]) => action === "replace" && !replaced.has(key)).map(([key]) => key);
        if (more.length === 0) return { before: first.resources, after: second.resources, replaced, plan };
        for (const key of more) replaced.add(key);
    }
    throw new Error("planBetween: replacements did not settle in five rounds");
}
