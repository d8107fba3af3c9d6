/**
 * Auto Scaling's DescribeInstanceRefreshes and Elastic Load Balancing's DescribeTargetHealth on
 * loopback, in the Query protocol and XML shapes the AWS CLI parses (`--endpoint-url`): what
 * deploy/await-refresh.sh reads while the proxies' instance refresh runs. AWS cannot run here, so
 * a test gives the refresh's course, one state per look, the last repeated; signatures are not
 * checked.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";

export interface RefreshState {
    readonly status: string;
    readonly percentComplete?: number;
    readonly instancesToUpdate?: number;
    readonly reason?: string;
    /** Old proxies the balancer is draining at this look. */
    readonly draining?: number;
}

export class RefreshStandIn {
    /** How many times the refresh was looked at. */
    looks = 0;

    private constructor(
        private readonly server: Server,
        readonly endpoint: string,
    ) {}

    /** `course` is what each look finds; an empty course is a group that never had a refresh. */
    static async start(group: string, course: readonly RefreshState[]): Promise<RefreshStandIn> {
        let standIn: RefreshStandIn | undefined;
        const refreshId = randomUUID();
        const server = createServer((request, response) => {
            const chunks: Buffer[] = [];
            request.on("data", (chunk) => chunks.push(chunk));
            request.on("end", () => {
                const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
                const requestId = randomUUID();
                const now = course[Math.min(Math.max((standIn?.looks ?? 1) - 1, 0), course.length - 1)];
                response.setHeader("Content-Type", "text/xml");
                switch (form.get("Action")) {
                    case "DescribeInstanceRefreshes": {
                        if (standIn) standIn.looks++;
                        const state = course[Math.min((standIn?.looks ?? 1) - 1, course.length - 1)];
                        const member =
                            form.get("AutoScalingGroupName") === group && state
                                ? `<member><InstanceRefreshId>${refreshId}</InstanceRefreshId><AutoScalingGroupName>${group}</AutoScalingGroupName>` +
                                  `<Status>${state.status}</Status>${state.reason ? `<StatusReason>${state.reason}</StatusReason>` : ""}` +
                                  `<StartTime>2026-12-02T00:00:00Z</StartTime><PercentageComplete>${state.percentComplete ?? 0}</PercentageComplete>` +
                                  `<InstancesToUpdate>${state.instancesToUpdate ?? 0}</InstancesToUpdate></member>`
                                : "";
                        response.end(
                            `<DescribeInstanceRefreshesResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><DescribeInstanceRefreshesResult>` +
                                `<InstanceRefreshes>${member}</InstanceRefreshes></DescribeInstanceRefreshesResult>` +
                                `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></DescribeInstanceRefreshesResponse>`,
                        );
                        return;
                    }
                    case "DescribeTargetHealth": {
                        const states = [...Array.from({ length: now?.draining ?? 0 }, () => "draining"), "healthy", "healthy"];
                        const members = states.map(
                            (state, i) =>
                                `<member><Target><Id>i-0${i}</Id><Port>443</Port></Target><HealthCheckPort>443</HealthCheckPort><TargetHealth><State>${state}</State></TargetHealth></member>`,
                        );
                        response.end(
                            `<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><DescribeTargetHealthResult>` +
                                `<TargetHealthDescriptions>${members.join("")}</TargetHealthDescriptions></DescribeTargetHealthResult>` +
                                `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></DescribeTargetHealthResponse>`,
                        );
                        return;
                    }
                    default:
                        response.writeHead(400);
                        response.end(
                            `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>the stand-in does not answer ${form.get("Action")}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
                        );
                }
            });
        });
        await new Promise<void>((resolve, reject) => {
            server.once("error", reject);
            server.listen(0, "127.0.0.1", resolve);
        });
        const { port } = server.address() as { port: number };
        standIn = new RefreshStandIn(server, `http://127.0.0.1:${port}`);
        return standIn;
    }

    stop(): Promise<void> {
        this.server.closeAllConnections();
        return new Promise((resolve) => this.server.close(() => resolve()));
    }
}
