// The provider and engine rules the change matrix applies (test/support/changePlan.ts): each
// checked against the installed provider's own documentation, so an upgrade that changes one
// fails here, and each applied by the planner to a resource that shows it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { type Plan, planChanges } from "./support/changePlan";
import type { RegisteredResource } from "./support/pulumiProgram";

const typings = (path: string) => readFileSync(require.resolve(path), "utf8").replace(/\s*\n\s*\*\s*/g, " ");

describe("the rules, as the installed providers document them", () => {
    it("pulumi-command: a change to `triggers` replaces (runs create); any other input change runs create again", () => {
        const command = typings("@pulumi/command/local/command.d.ts");
        assert.match(
            command,
            /If an `update` command isn't provided, then `create` will also be run when the resource's inputs are modified\./,
        );
        assert.match(
            command,
            /If the `update` command was provided the resource will be updated, otherwise it will be replaced using the `create` command\./,
        );
    });

    it("aws autoscaling: a new launch template version starts an instance refresh, which the provider does not wait for", () => {
        const refresh = typings("@pulumi/aws/types/input.d.ts");
        assert.match(
            refresh,
            /A refresh will always be triggered by a change in any of `launchConfiguration`, `launchTemplate`, or `mixedInstancesPolicy`\./,
        );
        assert.match(refresh, /A refresh will not start when `version = "\$Latest"` is configured in the `launchTemplate` block\./);
        assert.match(refresh, /This resource does not wait for the instance refresh to complete\./);
        assert.match(refresh, /When this resource is updated, any existing refresh is cancelled\./);
    });

    it("aws: a new instance type stops and starts the instance; user data too, unless userDataReplaceOnChange replaces it", () => {
        const instance = typings("@pulumi/aws/ec2/instance.d.ts");
        assert.match(
            instance,
            /setting `instanceType` will override the instance type specified in the Launch Template\. Updates to this field will trigger a stop\/start of the EC2 instance\./,
        );
        assert.match(
            instance,
            /Updates to this field will trigger a stop\/start of the EC2 instance by default\. If the `userDataReplaceOnChange` is set then updates to this field will trigger a destroy and recreate of the EC2 instance\./,
        );
    });

    it("aws lb: a network balancer takes more subnets in place, is recreated when one is removed, and is dual-stack only on subnets with IPv6", () => {
        const balancer = typings("@pulumi/aws/lb/loadBalancer.d.ts");
        assert.match(
            balancer,
            /For Load Balancers of type `network` subnets can only be added .*deleting a subnet for load balancers of type `network` will force a recreation of the resource\./,
        );
        assert.match(balancer, /You can only change to `dualstack` `ipAddressType` if the selected subnets are IPv6 enabled\./);
    });

    it("aws route53: allowOverwrite lets a record's first write replace one made by hand", () => {
        assert.match(
            typings("@pulumi/aws/route53/record.d.ts"),
            /Allow creation of this record to overwrite an existing record, if any\. This does not affect the ability to update the record using this provider/,
        );
    });

    it("aws acm: an imported certificate takes new material in place (the renewal alarm's ARN stays)", () => {
        assert.match(
            typings("@pulumi/aws/acm/certificate.d.ts"),
            /New certificate materials can be supplied to an existing imported certificate to update it in place\./,
        );
    });

    it("aws lb: a deregistration delay of at most 3600 s", () => {
        assert.match(
            typings("@pulumi/aws/lb/targetGroup.d.ts"),
            /Amount time for Elastic Load Balancing to wait before changing the state of a deregistering target from draining to unused\. The range is 0-3600 seconds\./,
        );
    });

    it("tls: a certificate inside its early-renewal window is replaced by the next update", () => {
        const certificate = typings("@pulumi/tls/locallySignedCert.d.ts");
        assert.match(
            certificate,
            /or the early renewal period is reached \(i\.e\. within the `earlyRenewalHours`\): when this happens, the `readyForRenewal` attribute will be `true`\. At this time, applying the Terraform configuration will cause a new certificate to be generated/,
        );
    });
});

/** A registered resource with just what the planner reads. */
function resource(type: string, inputs: Record<string, unknown>, ignoreChanges: string[] = []): RegisteredResource {
    return {
        type,
        name: "r",
        inputs,
        secretInputs: new Set(),
        urn: "urn",
        dependencies: [],
        aliases: [],
        parent: "",
        options: { protect: false, ignoreChanges, replaceOnChanges: [], deleteBeforeReplace: false },
    };
}
const action = (before: RegisteredResource, after: RegisteredResource) => [...(planChanges([before], [after]) as Plan).values()][0];

describe("the planner applies them", () => {
    const command = (inputs: Record<string, unknown>) =>
        resource("command:local:Command", { create: "bash deploy/ssm-send.sh", environment: { A: "a" }, triggers: ["t1"], ...inputs });
    const instance = (inputs: Record<string, unknown>) =>
        resource(
            "aws:ec2/instance:Instance",
            { ami: "ami-1", instanceType: "t3.small", subnetId: "s-1", userData: "u1", userDataReplaceOnChange: true, ...inputs },
            ["ami"],
        );

    it("a command: same inputs, same; new environment, an update (create runs again); new triggers, a replacement", () => {
        assert.equal(action(command({}), command({})), "same");
        assert.equal(action(command({}), command({ environment: { A: "b" } })), "update");
        assert.equal(action(command({}), command({ triggers: ["t2"] })), "replace");
    });

    it("an instance: a new AMI is ignored; a new type stops and starts it; new user data replaces it with the flag, stops and starts it without", () => {
        assert.equal(action(instance({}), instance({ ami: "ami-2" })), "same");
        assert.equal(action(instance({}), instance({ instanceType: "t3.medium" })), "update (stop and start)");
        assert.equal(action(instance({}), instance({ userData: "u2" })), "replace");
        assert.equal(
            action(instance({ userDataReplaceOnChange: false }), instance({ userData: "u2", userDataReplaceOnChange: false })),
            "update (stop and start)",
        );
        assert.equal(action(instance({}), instance({ subnetId: "s-2" })), "replace");
    });

    it("an EIP association: any change replaces it", () => {
        const association = (instanceId: string) =>
            resource("aws:ec2/eipAssociation:EipAssociation", { allocationId: "eipalloc-1", instanceId, allowReassociation: true });
        assert.equal(action(association("i-1"), association("i-2")), "replace");
    });

    it("a release object: new content under a new key replaces it; a launch template's new instance type updates it (a new version)", () => {
        const object = (key: string, content: string) => resource("aws:s3/bucketObjectv2:BucketObjectv2", { bucket: "b", key, content });
        assert.equal(action(object("edge/releases/1", "a"), object("edge/releases/2", "b")), "replace");
        assert.equal(action(object("edge/gate", "a"), object("edge/gate", "b")), "update");
        const template = (instanceType: string) => resource("aws:ec2/launchTemplate:LaunchTemplate", { imageId: "ami-1", instanceType });
        assert.equal(action(template("c6i.large"), template("c6i.xlarge")), "update");
    });

    it("an alarm: a new threshold updates it, a new name replaces it; ACM's copy takes a renewed certificate in place", () => {
        const alarm = (name: string, threshold: number) =>
            resource("aws:cloudwatch/metricAlarm:MetricAlarm", { name, metricName: "OpenSockets", threshold });
        assert.equal(action(alarm("a", 30840), alarm("a", 67840)), "update");
        assert.equal(action(alarm("a", 30840), alarm("b", 30840)), "replace");
        const copy = (certificateBody: string) => resource("aws:acm/certificate:Certificate", { certificateBody, privateKey: "k" });
        assert.equal(action(copy("leaf 1"), copy("leaf 2")), "update");
    });

    it("the ACME order: the same inputs, the same; another name, CA, zone or account, a new order", () => {
        const order = (inputs: Record<string, unknown>) =>
            resource("pulumi-nodejs:dynamic/wss-edge:AcmeOrder", {
                domainName: "ws.example.com",
                directoryUrl: "https://acme-v02.api.letsencrypt.org/directory",
                hostedZoneId: "Z1",
                accountKeyPem: "k",
                ...inputs,
            });
        assert.equal(action(order({}), order({})), "same");
        for (const change of [
            { domainName: "chat.example.com" },
            { directoryUrl: "https://other/dir" },
            { hostedZoneId: "Z2" },
            { accountKeyPem: "k2" },
        ])
            assert.equal(action(order({}), order(change)), "replace", JSON.stringify(change));
    });

    it("a target group: a new drain delay updates it, a new port replaces it", () => {
        const group = (port: number, deregistrationDelay: number) =>
            resource("aws:lb/targetGroup:TargetGroup", { port, protocol: "TCP", deregistrationDelay });
        assert.equal(action(group(443, 600), group(443, 300)), "update");
        assert.equal(action(group(443, 600), group(8443, 600)), "replace");
    });
});

describe("a Network Load Balancer's subnets", () => {
    const balancer = (subnets: string[]) => resource("aws:lb/loadBalancer:LoadBalancer", { loadBalancerType: "network", subnets });
    it("more of them: an update in place; fewer, or others: a replacement", () => {
        assert.equal(action(balancer(["a", "b"]), balancer(["a", "b", "c"])), "update");
        assert.equal(action(balancer(["a", "b", "c"]), balancer(["a", "b"])), "replace");
        assert.equal(action(balancer(["a", "b"]), balancer(["a", "c"])), "replace");
    });
});
