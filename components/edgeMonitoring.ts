import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface MonitoredInstance {
    /** What the alarm names it: "proxy", "backend-1"… */
    readonly role: string;
    readonly instance: aws.ec2.Instance;
}

/** A target group of the load balancer, whose unhealthy proxies raise an alarm. */
export interface MonitoredTargetGroup {
    readonly port: number;
    readonly targetGroup: aws.lb.TargetGroup;
    readonly loadBalancer: aws.lb.LoadBalancer;
}

export interface EdgeMonitoringArgs {
    readonly instances: readonly MonitoredInstance[];
    /** With the load-balanced shape: each target group, alarmed when any proxy in it is unhealthy. */
    readonly targetGroups?: readonly MonitoredTargetGroup[];
    /** With certificate acme: ACM's copy of the certificate, and how many days before expiry a missed renewal raises the alarm. */
    readonly acmeCertificate?: { readonly acmCertificateArn: pulumi.Input<string>; readonly alarmDaysLeft: pulumi.Input<number> };
    /** Who is told when an alarm fires or clears; without it, the topic has no subscriber yet. */
    readonly alarmEmail?: string;
}

/** An instance whose status checks fail this many minutes in a row raises its alarm. */
const failedMinutes = 2;

/**
 * Alarms and a dashboard for the edge's instances. Each instance has two alarms on EC2's status
 * checks, both sent to one SNS topic: the instance check (the VM itself: kernel, memory, disk,
 * network config) and the system check (the host under it), whose alarm also has EC2 recover the
 * instance onto healthy hardware, keeping its ID, addresses and disk, so the edge comes back without
 * a `pulumi up`. Missing data keeps the alarm as it was: EC2 reports no status checks for a
 * stopped instance, and a planned stop (a new instance type is applied by stopping and
 * starting the VM) is not a failure. The load-balanced proxies have no alarms of their own: the
 * group replaces a proxy the balancer finds unhealthy, and the target groups' alarms say so.
 * (EC2's recover action is valid on StatusCheckFailed_System alarms of instances on EBS:
 * docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/UsingAlarmActions.html#AddingRecoverActions.)
 */
export class EdgeMonitoring extends pulumi.ComponentResource {
    readonly topic: aws.sns.Topic;
    readonly alarms: aws.cloudwatch.MetricAlarm[];
    readonly dashboard: aws.cloudwatch.Dashboard;
    /** Where a person opens the dashboard in the AWS console. */
    readonly dashboardUrl: pulumi.Output<string>;

    constructor(name: string, args: EdgeMonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:monitoring:EdgeMonitoring", name, {}, opts);
        const region = aws.config.region ?? "us-east-1";
        // Alarm and dashboard names are unique in the account: each edge's carry its name, but the
        // stack's own ("edge"), whose alarms and dashboard were named before there could be two.
        const prefix = `${pulumi.getProject()}-${pulumi.getStack()}${name === "edge" ? "" : `-${name}`}`;

        this.topic = new aws.sns.Topic(`${name}-alarms`, { displayName: `${prefix} alarms` }, { parent: this });
        if (args.alarmEmail) {
            new aws.sns.TopicSubscription(
                `${name}-alarms-email`,
                { topic: this.topic.arn, protocol: "email", endpoint: args.alarmEmail },
                { parent: this },
            );
        }

        this.alarms = args.instances.flatMap(({ role, instance }) => {
            const common = {
                namespace: "AWS/EC2",
                dimensions: { InstanceId: instance.id },
                statistic: "Maximum",
                period: 60,
                evaluationPeriods: failedMinutes,
                threshold: 1,
                comparisonOperator: "GreaterThanOrEqualToThreshold",
                treatMissingData: "missing",
                okActions: [this.topic.arn],
            };
            return [
                new aws.cloudwatch.MetricAlarm(
                    `${name}-${role}-instance-check`,
                    {
                        ...common,
                        name: `${prefix}-${role}-instance-check`,
                        alarmDescription: `${role}: the VM fails EC2's instance status check (kernel, memory, disk or network inside it)`,
                        metricName: "StatusCheckFailed_Instance",
                        alarmActions: [this.topic.arn],
                    },
                    { parent: this },
                ),
                new aws.cloudwatch.MetricAlarm(
                    `${name}-${role}-system-check`,
                    {
                        ...common,
                        name: `${prefix}-${role}-system-check`,
                        alarmDescription: `${role}: the host under the VM fails EC2's system status check; EC2 recovers the instance`,
                        metricName: "StatusCheckFailed_System",
                        alarmActions: [this.topic.arn, `arn:aws:automate:${region}:ec2:recover`],
                    },
                    { parent: this },
                ),
            ];
        });

        for (const { port, targetGroup, loadBalancer } of args.targetGroups ?? []) {
            this.alarms.push(
                new aws.cloudwatch.MetricAlarm(
                    `${name}-unhealthy-proxies-${port}`,
                    {
                        name: `${prefix}-unhealthy-proxies-${port}`,
                        alarmDescription: `A proxy fails the load balancer's health check on port ${port}: it gets no new clients`,
                        namespace: "AWS/NetworkELB",
                        metricName: "UnHealthyHostCount",
                        dimensions: { TargetGroup: targetGroup.arnSuffix, LoadBalancer: loadBalancer.arnSuffix },
                        statistic: "Maximum",
                        period: 60,
                        evaluationPeriods: failedMinutes,
                        threshold: 1,
                        comparisonOperator: "GreaterThanOrEqualToThreshold",
                        treatMissingData: "notBreaching",
                        alarmActions: [this.topic.arn],
                        okActions: [this.topic.arn],
                    },
                    { parent: this },
                ),
            );
        }

        if (args.acmeCertificate) {
            // ACM publishes DaysToExpiry once a day for every certificate it holds. Missing data (the first
            // day, before ACM's first point) keeps the alarm as it was: an expired certificate, whose metric
            // stops, was under the threshold for weeks before and stays in alarm.
            this.alarms.push(
                new aws.cloudwatch.MetricAlarm(
                    `${name}-certificate-renewal`,
                    {
                        name: `${prefix}-certificate-renewal`,
                        alarmDescription:
                            "The edge's ACME certificate was not renewed in time: pulumi up (the weekly refresh workflow) renews it once a third of its lifetime is left; see docs/aws.md",
                        namespace: "AWS/CertificateManager",
                        metricName: "DaysToExpiry",
                        dimensions: { CertificateArn: args.acmeCertificate.acmCertificateArn },
                        statistic: "Minimum",
                        period: 86_400,
                        evaluationPeriods: 2,
                        datapointsToAlarm: 2,
                        threshold: args.acmeCertificate.alarmDaysLeft,
                        comparisonOperator: "LessThanThreshold",
                        treatMissingData: "missing",
                        alarmActions: [this.topic.arn],
                        okActions: [this.topic.arn],
                    },
                    { parent: this },
                ),
            );
        }

        const instanceIds = pulumi.all(args.instances.map(({ role, instance }) => instance.id.apply((id) => ({ role, id }))));
        this.dashboard = new aws.cloudwatch.Dashboard(
            `${name}-dashboard`,
            {
                dashboardName: prefix,
                dashboardBody: instanceIds.apply((ids) => JSON.stringify(dashboardBody(region, ids))),
            },
            { parent: this },
        );
        this.dashboardUrl = pulumi.interpolate`https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards:name=${this.dashboard.dashboardName}`;

        this.registerOutputs({ topicArn: this.topic.arn, dashboardUrl: this.dashboardUrl });
    }
}

/** Status checks, CPU and network of every instance, a graph each. */
function dashboardBody(region: string, instances: readonly { role: string; id: string }[]) {
    const graph = (title: string, metric: string, stat: string, x: number, y: number) => ({
        type: "metric",
        x,
        y,
        width: 12,
        height: 6,
        properties: {
            title,
            region,
            stat,
            period: 60,
            metrics: instances.map(({ role, id }) => ["AWS/EC2", metric, "InstanceId", id, { label: role }]),
        },
    });
    return {
        widgets: [
            graph("Status check failed (1 = failing)", "StatusCheckFailed", "Maximum", 0, 0),
            graph("CPU utilization (%)", "CPUUtilization", "Average", 12, 0),
            graph("Network in (bytes)", "NetworkIn", "Sum", 0, 6),
            graph("Network out (bytes)", "NetworkOut", "Sum", 12, 6),
        ],
    };
}
