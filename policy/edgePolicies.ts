import * as aws from "@pulumi/aws";
import { type PolicyResource, type ResourceValidationPolicy, type StackValidationPolicy, validateResourceOfType } from "@pulumi/policy";

/** An ingress rule as security groups and standalone rule resources both express it. */
interface IngressRule {
    readonly fromPort?: number;
    readonly toPort?: number;
    readonly protocol?: string;
    readonly cidrBlocks?: readonly string[];
    readonly ipv6CidrBlocks?: readonly string[];
}

const worldRanges = ["0.0.0.0/0", "::/0"];
const isOpenToWorld = (rule: IngressRule) =>
    [...(rule.cidrBlocks ?? []), ...(rule.ipv6CidrBlocks ?? [])].some((c) => worldRanges.includes(c));
const coversPort = (rule: IngressRule, port: number) =>
    rule.protocol === "-1" || rule.protocol === "all" || ((rule.fromPort ?? 0) <= port && port <= (rule.toPort ?? 65535));
const portsOf = (rule: IngressRule) =>
    rule.protocol === "-1"
        ? "all ports"
        : rule.fromPort === rule.toPort
          ? `port ${rule.fromPort}`
          : `ports ${rule.fromPort}-${rule.toPort}`;

/** Ingress rules of a security group, or of a standalone ingress rule resource. */
/** The properties of the resource types above that carry ingress rules. */
interface RuleProps extends IngressRule {
    readonly ingress?: IngressRule[];
    readonly type?: string;
    readonly ipProtocol?: string;
    readonly cidrIpv4?: string;
    readonly cidrIpv6?: string;
}

function ingressRules(type: string, props: RuleProps): IngressRule[] {
    switch (type) {
        case "aws:ec2/securityGroup:SecurityGroup":
            return props.ingress ?? [];
        case "aws:ec2/securityGroupRule:SecurityGroupRule":
            return props.type === "ingress" ? [props] : [];
        case "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
            return [
                {
                    fromPort: props.fromPort,
                    toPort: props.toPort,
                    protocol: props.ipProtocol,
                    cidrBlocks: props.cidrIpv4 ? [props.cidrIpv4] : [],
                    ipv6CidrBlocks: props.cidrIpv6 ? [props.cidrIpv6] : [],
                },
            ];
        default:
            return [];
    }
}

/** Only 443 may be open to the world (and 80, for the HTTPS redirect, when the pack's config allows it). */
export const worldIngressOnlyOnWebPorts: ResourceValidationPolicy = {
    name: "world-ingress-only-on-web-ports",
    description: "No security-group rule admits 0.0.0.0/0 or ::/0 except on 443 (and 80 when allowHttpRedirect is on).",
    enforcementLevel: "mandatory",
    configSchema: { properties: { allowHttpRedirect: { type: "boolean", default: false } } },
    validateResource: (args, reportViolation) => {
        const { allowHttpRedirect } = args.getConfig<{ allowHttpRedirect?: boolean }>();
        const allowed = allowHttpRedirect ? [443, 80] : [443];
        for (const rule of ingressRules(args.type, args.props)) {
            if (!isOpenToWorld(rule)) continue;
            const single = rule.protocol !== "-1" && rule.fromPort !== undefined && rule.fromPort === rule.toPort;
            if (!single || !allowed.includes(rule.fromPort ?? -1)) {
                reportViolation(`${portsOf(rule)} is open to the whole internet; only ${allowed.join(" and ")} may be`);
            }
        }
    },
};

/** The edge's VMs take releases through Systems Manager and operators reach them with Session Manager: nothing needs SSH. */
export const noSsh: ResourceValidationPolicy = {
    name: "no-ssh",
    description: "No security-group rule admits port 22, from any range or group: the VMs are reached through Systems Manager.",
    enforcementLevel: "mandatory",
    validateResource: (args, reportViolation) => {
        for (const rule of ingressRules(args.type, args.props)) {
            if (coversPort(rule, 22))
                reportViolation(`${portsOf(rule)} admits SSH (22); reach the VMs with Session Manager instead (aws ssm start-session)`);
        }
    },
};

export const imdsV2Required: ResourceValidationPolicy = {
    name: "imdsv2-required",
    description: "Every instance requires IMDSv2 session tokens.",
    enforcementLevel: "mandatory",
    validateResource: [
        validateResourceOfType(aws.ec2.Instance, (instance, _args, reportViolation) => {
            if (instance.metadataOptions?.httpTokens !== "required")
                reportViolation('instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens = "required")');
        }),
        validateResourceOfType(aws.ec2.LaunchTemplate, (template, _args, reportViolation) => {
            if (template.metadataOptions?.httpTokens !== "required")
                reportViolation(
                    'instances launched from this template must require IMDSv2 tokens (metadataOptions.httpTokens = "required")',
                );
        }),
    ],
};

export const rootVolumesEncrypted: ResourceValidationPolicy = {
    name: "root-volumes-encrypted",
    description: "Every instance's root volume is encrypted.",
    enforcementLevel: "mandatory",
    validateResource: validateResourceOfType(aws.ec2.Instance, (instance, _args, reportViolation) => {
        if (instance.rootBlockDevice?.encrypted !== true)
            reportViolation("the root volume must be encrypted (rootBlockDevice.encrypted = true)");
    }),
};

/** Backends are the instances tagged Role=wss-edge-backend; only other security groups may reach them. */
export const backendsWithoutPublicIngress: StackValidationPolicy = {
    name: "backends-without-public-ingress",
    description: "Backend instances admit traffic only from other security groups (the proxy's), never from address ranges.",
    enforcementLevel: "mandatory",
    validateStack: (args, reportViolation) => {
        for (const instance of args.resources.filter(
            (r) => r.type === "aws:ec2/instance:Instance" && r.props.tags?.Role === "wss-edge-backend",
        )) {
            for (const group of securityGroupsOf(instance)) {
                for (const rule of ingressRules(group.type, group.props)) {
                    if ((rule.cidrBlocks ?? []).length > 0 || (rule.ipv6CidrBlocks ?? []).length > 0) {
                        reportViolation(
                            `backend ${instance.name} is reachable from address ranges through ${group.name} (${portsOf(rule)})`,
                            instance.urn,
                        );
                    }
                }
            }
        }
    },
};

function securityGroupsOf(instance: PolicyResource): PolicyResource[] {
    return (instance.propertyDependencies.vpcSecurityGroupIds ?? []).filter((r) => r.type === "aws:ec2/securityGroup:SecurityGroup");
}

/** Policies see secrets unwrapped, so the rule is strict: no stack output holds a private key at all. */
export const noPrivateKeysInOutputs: StackValidationPolicy = {
    name: "no-private-keys-in-outputs",
    description: "No stack output contains a private key.",
    enforcementLevel: "mandatory",
    validateStack: (args, reportViolation) => {
        for (const stack of args.resources.filter((r) => r.type === "pulumi:pulumi:Stack")) {
            for (const [name, value] of Object.entries(stack.props)) {
                if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(JSON.stringify(value) ?? ""))
                    reportViolation(`stack output "${name}" contains a private key`, stack.urn);
            }
        }
    },
};

export const edgePolicies = [
    worldIngressOnlyOnWebPorts,
    noSsh,
    imdsV2Required,
    rootVolumesEncrypted,
    backendsWithoutPublicIngress,
    noPrivateKeysInOutputs,
];
