import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface InstanceRoleArgs {
    /** What the VM may do besides being managed by Systems Manager: read its releases, pull its image. */
    readonly statements: pulumi.Input<pulumi.Input<aws.iam.PolicyStatement>[]>;
    /** The CloudWatch namespace the VM sends its metrics to, and no other (PutMetricData has no resource to scope). */
    readonly metricsNamespace?: string;
}

/**
 * A VM's identity: a role EC2 may assume, Systems Manager's managed-instance policy (the agent
 * registers, takes commands, and Session Manager reaches the VM with no open port), and what
 * this kind of VM needs beyond that, in an inline policy of its own.
 */
export class InstanceRole extends pulumi.ComponentResource {
    readonly role: aws.iam.Role;
    readonly policy: aws.iam.RolePolicy;
    readonly managed: aws.iam.RolePolicyAttachment;
    readonly profile: aws.iam.InstanceProfile;

    constructor(name: string, args: InstanceRoleArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:iam:InstanceRole", name, {}, opts);
        this.role = new aws.iam.Role(
            name,
            { assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "ec2.amazonaws.com" }) },
            { parent: this },
        );
        this.managed = new aws.iam.RolePolicyAttachment(
            `${name}-ssm`,
            { role: this.role.name, policyArn: ssmManagedInstancePolicyArn },
            { parent: this },
        );
        this.policy = new aws.iam.RolePolicy(
            name,
            {
                role: this.role.id,
                policy: pulumi.output(args.statements).apply((statements) =>
                    JSON.stringify({
                        Version: "2012-10-17",
                        Statement: [
                            ...statements,
                            ...(args.metricsNamespace
                                ? [
                                      {
                                          Effect: "Allow",
                                          Action: "cloudwatch:PutMetricData",
                                          Resource: "*",
                                          Condition: { StringEquals: { "cloudwatch:namespace": args.metricsNamespace } },
                                      },
                                  ]
                                : []),
                        ],
                    }),
                ),
            },
            { parent: this },
        );
        this.profile = new aws.iam.InstanceProfile(name, { role: this.role.name }, { parent: this });
        this.registerOutputs({ roleArn: this.role.arn, profile: this.profile.name });
    }
}

/** AWS's managed policy for instances Systems Manager manages. */
export const ssmManagedInstancePolicyArn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
