/**
 * Systems Manager's stand-in for the VM twin: a small HTTP server on loopback that answers what
 * deploy/ssm-send.sh asks, in AWS's own wire protocols as the AWS CLI sends them, so the real
 * script runs against twins unchanged (its endpoint overrides point here):
 *
 *   - Systems Manager, JSON 1.1 (`X-Amz-Target: AmazonSSM.<Operation>`): SendCommand,
 *     GetCommandInvocation, DescribeInstanceInformation; errors as AWS shapes them
 *     (`{"__type": "InvocationDoesNotExist"}`, HTTP 400).
 *   - Auto Scaling, the Query protocol (`Action=DescribeAutoScalingGroups`, an XML answer), for
 *     `asg:NAME` targets.
 *
 * Documents are the stack's CommandDocument objects, registered by name; instances are twins,
 * registered by instance ID. SendCommand checks the parameters against the document (SSM refuses
 * the command otherwise) and runs the command on each twin through its agent stand-in
 * (`VmTwin.runDocument`), asynchronously, as the agent does after SSM delivers it. Request
 * signatures are not checked: the stand-in trusts whoever reaches its loopback port.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import type { CommandDocument } from "../host/releaseChannel";
import { currentKey, documentScript, s3Url } from "../host/releaseChannel";
import { freePort } from "../local/ports";
import type { TwinReleaseStore } from "./releaseStore";
import { twinRegion } from "./releaseStore";
import type { RemoteResult, VmTwin } from "./vmTwin";

/** What SSM keeps of each command's output in GetCommandInvocation (the rest goes to S3, which the stack does not ask for). */
export const outputLimits = { stdout: 24000, stderr: 8000 } as const;

export type InvocationStatus = "Pending" | "InProgress" | "Success" | "Failed" | "TimedOut" | "Cancelled";

/** One command on one instance, as the stand-in ran it: what GetCommandInvocation reports, and when it ran (ms since the epoch). */
export interface Invocation {
    readonly commandId: string;
    readonly instanceId: string;
    readonly documentName: string;
    readonly parameters: Readonly<Record<string, string>>;
    readonly comment: string;
    readonly requestedAt: number;
    status: InvocationStatus;
    startedAt?: number;
    endedAt?: number;
    responseCode: number;
    stdout: string;
    stderr: string;
}

export interface SsmStandInOptions {
    /** The stack's documents by name, as `aws ssm send-command --document-name` names them. */
    readonly documents: Readonly<Record<string, CommandDocument>>;
    /** The managed instances: instance ID → its twin. */
    readonly instances: Readonly<Record<string, VmTwin>>;
    /** Auto Scaling groups: name → the IDs of its InService instances, in launch order. */
    readonly autoScalingGroups?: Readonly<Record<string, readonly string[]>>;
}

class AwsError extends Error {
    constructor(
        readonly code: string,
        message: string,
    ) {
        super(message);
    }
}

export class SsmStandIn {
    /** Every invocation, in the order SendCommand made them. */
    readonly invocations: Invocation[] = [];
    private readonly running = new Set<Promise<void>>();
    private readonly cancel = new AbortController();

    private constructor(
        private readonly server: Server,
        readonly port: number,
        private readonly options: SsmStandInOptions,
    ) {}

    static async start(options: SsmStandInOptions): Promise<SsmStandIn> {
        const port = await freePort("127.0.0.1");
        let standIn: SsmStandIn | undefined;
        const server = createServer((request, response) => void standIn?.handle(request, response));
        await new Promise<void>((done, fail) => {
            server.once("error", fail);
            server.listen(port, "127.0.0.1", () => done());
        });
        standIn = new SsmStandIn(server, port, options);
        return standIn;
    }

    /** Where the AWS CLI reaches it: ssm-send.sh's WSS_EDGE_SSM_ENDPOINT and WSS_EDGE_AUTOSCALING_ENDPOINT. */
    get endpoint(): string {
        return `http://127.0.0.1:${this.port}`;
    }

    /** Stops answering, and ends the commands still running on twins (their scripts are killed). */
    async stop(): Promise<void> {
        this.cancel.abort();
        await Promise.all([...this.running]);
        this.server.closeAllConnections();
        await new Promise<void>((done) => this.server.close(() => done()));
    }

    private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
        const chunks: Buffer[] = [];
        for await (const chunk of request) chunks.push(chunk as Buffer);
        const body = Buffer.concat(chunks).toString("utf8");
        const requestId = randomUUID();
        const target = request.headers["x-amz-target"];
        if (typeof target === "string") {
            const reply = (status: number, payload: unknown) => {
                response.writeHead(status, { "Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": requestId });
                response.end(JSON.stringify(payload));
            };
            try {
                reply(200, this.ssm(target, body ? JSON.parse(body) : {}));
            } catch (error) {
                if (error instanceof AwsError) reply(400, { __type: error.code, message: error.message });
                else reply(500, { __type: "InternalServerError", message: (error as Error).message });
            }
            return;
        }
        const form = new URLSearchParams(body);
        response.setHeader("Content-Type", "text/xml");
        if (form.get("Action") === "DescribeAutoScalingGroups") {
            response.writeHead(200);
            response.end(this.describeAutoScalingGroups(form, requestId));
            return;
        }
        response.writeHead(400);
        response.end(
            `<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>${xml(
                `The action ${form.get("Action") ?? "(none)"} is not valid for this web service.`,
            )}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
        );
    }

    private ssm(target: string, input: Record<string, unknown>): unknown {
        switch (target) {
            case "AmazonSSM.SendCommand":
                return this.sendCommand(input);
            case "AmazonSSM.GetCommandInvocation":
                return this.getCommandInvocation(input);
            case "AmazonSSM.DescribeInstanceInformation":
                return this.describeInstanceInformation(input);
            default:
                throw new AwsError("UnknownOperationException", `${target} is not an operation the twin's stand-in answers`);
        }
    }

    private sendCommand(input: Record<string, unknown>): unknown {
        const name = String(input.DocumentName ?? "");
        const document = this.options.documents[name];
        if (!document) throw new AwsError("InvalidDocument", `Document with name ${name} does not exist.`);
        const instanceIds = (input.InstanceIds ?? []) as string[];
        if (instanceIds.length === 0)
            throw new AwsError("InvalidParameters", "InstanceIds is required (Targets are not supported by the twin's stand-in).");
        const unknown = instanceIds.filter((id) => !this.options.instances[id]?.running);
        if (unknown.length > 0)
            throw new AwsError("InvalidInstanceId", `Instances [[${unknown.join(", ")}]] not in a valid state for account.`);
        // On the wire every parameter is a list of strings; a document's String parameter takes one.
        const parameters: Record<string, string> = {};
        for (const [key, values] of Object.entries((input.Parameters ?? {}) as Record<string, unknown>)) {
            if (!Array.isArray(values) || values.length !== 1)
                throw new AwsError("InvalidParameters", `Parameter ${key} takes exactly one value.`);
            parameters[key] = String(values[0]);
        }
        try {
            documentScript(document, parameters);
        } catch (error) {
            throw new AwsError("InvalidParameters", (error as Error).message);
        }
        const commandId = randomUUID();
        const requestedAt = Date.now();
        const comment = String(input.Comment ?? "");
        for (const instanceId of instanceIds) {
            const invocation: Invocation = {
                commandId,
                instanceId,
                documentName: name,
                parameters,
                comment,
                requestedAt,
                status: "Pending",
                responseCode: -1,
                stdout: "",
                stderr: "",
            };
            this.invocations.push(invocation);
            const run = this.run(invocation, document, this.options.instances[instanceId]);
            this.running.add(run);
            void run.finally(() => this.running.delete(run));
        }
        const timeoutSeconds = Number(input.TimeoutSeconds ?? 3600);
        return {
            Command: {
                CommandId: commandId,
                DocumentName: name,
                DocumentVersion: "1",
                Comment: comment,
                ExpiresAfter: (requestedAt + timeoutSeconds * 1000) / 1000,
                Parameters: Object.fromEntries(Object.entries(parameters).map(([key, value]) => [key, [value]])),
                InstanceIds: instanceIds,
                Targets: [],
                RequestedDateTime: requestedAt / 1000,
                Status: "Pending",
                StatusDetails: "Pending",
                OutputS3Region: twinRegion,
                OutputS3BucketName: "",
                OutputS3KeyPrefix: "",
                MaxConcurrency: "50",
                MaxErrors: "0",
                TargetCount: instanceIds.length,
                CompletedCount: 0,
                ErrorCount: 0,
                DeliveryTimedOutCount: 0,
                ServiceRole: "",
                NotificationConfig: { NotificationArn: "", NotificationEvents: [], NotificationType: "" },
                CloudWatchOutputConfig: { CloudWatchLogGroupName: "", CloudWatchOutputEnabled: false },
                TimeoutSeconds: timeoutSeconds,
            },
        };
    }

    /** The agent's part: the command delivered, run on the twin, its result recorded. */
    private async run(invocation: Invocation, document: CommandDocument, twin: VmTwin): Promise<void> {
        // Delivery: the command is Pending until the agent picks it up.
        await new Promise((done) => setTimeout(done, 200));
        if (this.cancel.signal.aborted) {
            invocation.status = "Cancelled";
            return;
        }
        invocation.status = "InProgress";
        invocation.startedAt = Date.now();
        let result: RemoteResult;
        try {
            result = await twin.runDocument(document, invocation.parameters, {
                commandId: invocation.commandId,
                signal: this.cancel.signal,
            });
        } catch (error) {
            result = { code: 1, stdout: "", stderr: (error as Error).message };
        }
        invocation.endedAt = Date.now();
        invocation.responseCode = result.code;
        invocation.stdout = result.stdout;
        invocation.stderr = result.stderr;
        invocation.status = this.cancel.signal.aborted
            ? "Cancelled"
            : result.code === 0
              ? "Success"
              : /vm twin: killed after/.test(result.stderr)
                ? "TimedOut"
                : "Failed";
    }

    private getCommandInvocation(input: Record<string, unknown>): unknown {
        const invocation = this.invocations.find((i) => i.commandId === input.CommandId && i.instanceId === input.InstanceId);
        if (!invocation) throw new AwsError("InvocationDoesNotExist", "");
        const { startedAt, endedAt } = invocation;
        const [step] = this.options.documents[invocation.documentName].mainSteps;
        return {
            CommandId: invocation.commandId,
            InstanceId: invocation.instanceId,
            Comment: invocation.comment,
            DocumentName: invocation.documentName,
            DocumentVersion: "1",
            PluginName: step.name,
            ResponseCode: invocation.responseCode,
            ExecutionStartDateTime: startedAt ? new Date(startedAt).toISOString() : "",
            ExecutionElapsedTime: startedAt ? `PT${(((endedAt ?? Date.now()) - startedAt) / 1000).toFixed(3)}S` : "",
            ExecutionEndDateTime: endedAt ? new Date(endedAt).toISOString() : "",
            Status: invocation.status,
            StatusDetails: invocation.status,
            StandardOutputContent: invocation.stdout.slice(0, outputLimits.stdout),
            StandardOutputUrl: "",
            StandardErrorContent: invocation.stderr.slice(0, outputLimits.stderr),
            StandardErrorUrl: "",
            CloudWatchOutputConfig: { CloudWatchLogGroupName: "", CloudWatchOutputEnabled: false },
        };
    }

    private describeInstanceInformation(input: Record<string, unknown>): unknown {
        let ids = Object.keys(this.options.instances);
        const filters = [
            ...((input.Filters ?? []) as { Key: string; Values: string[] }[]).map((f) => ({ key: f.Key, values: f.Values })),
            ...((input.InstanceInformationFilterList ?? []) as { key: string; valueSet: string[] }[]).map((f) => ({
                key: f.key,
                values: f.valueSet,
            })),
        ];
        for (const filter of filters) {
            if (filter.key !== "InstanceIds")
                throw new AwsError("InvalidFilterKey", `The twin's stand-in filters by InstanceIds only, not ${filter.key}.`);
            ids = ids.filter((id) => filter.values.includes(id));
        }
        return {
            InstanceInformationList: ids.map((id) => {
                const twin = this.options.instances[id];
                return {
                    InstanceId: id,
                    PingStatus: twin.running ? "Online" : "ConnectionLost",
                    LastPingDateTime: Date.now() / 1000,
                    AgentVersion: "twin-stand-in",
                    IsLatestVersion: true,
                    PlatformType: "Linux",
                    PlatformName: "Debian GNU/Linux",
                    PlatformVersion: "12",
                    ResourceType: "EC2Instance",
                    IPAddress: twin.address,
                    ComputerName: "wss-edge-proxy",
                };
            }),
        };
    }

    private describeAutoScalingGroups(form: URLSearchParams, requestId: string): string {
        const groups = this.options.autoScalingGroups ?? {};
        const asked = [...form.entries()].filter(([key]) => /^AutoScalingGroupNames\.member\.\d+$/.test(key)).map(([, value]) => value);
        const names = (asked.length > 0 ? asked : Object.keys(groups)).filter((name) => name in groups);
        const members = names.map(
            (name) =>
                `<member><AutoScalingGroupName>${xml(name)}</AutoScalingGroupName>` +
                `<AutoScalingGroupARN>arn:aws:autoscaling:${twinRegion}:000000000000:autoScalingGroup:${randomUUID()}:autoScalingGroupName/${xml(name)}</AutoScalingGroupARN>` +
                `<MinSize>${groups[name].length}</MinSize><MaxSize>${groups[name].length}</MaxSize><DesiredCapacity>${groups[name].length}</DesiredCapacity>` +
                `<DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>${twinRegion}a</member></AvailabilityZones>` +
                "<HealthCheckType>EC2</HealthCheckType><HealthCheckGracePeriod>300</HealthCheckGracePeriod><CreatedTime>2025-01-01T00:00:00Z</CreatedTime>" +
                `<Instances>${groups[name]
                    .map(
                        (id) =>
                            `<member><InstanceId>${xml(id)}</InstanceId><InstanceType>c6i.large</InstanceType><AvailabilityZone>${twinRegion}a</AvailabilityZone>` +
                            "<LifecycleState>InService</LifecycleState><HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>",
                    )
                    .join("")}</Instances></member>`,
        );
        return (
            '<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">' +
            `<DescribeAutoScalingGroupsResult><AutoScalingGroups>${members.join("")}</AutoScalingGroups></DescribeAutoScalingGroupsResult>` +
            `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`
        );
    }
}

function xml(text: string): string {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** What one run of deploy/ssm-send.sh is asked to do, as components/releaseChannel.ts's `send` asks it. */
export interface SsmSendRequest {
    readonly documentName: string;
    readonly parameters: Readonly<Record<string, string>>;
    /** Instance IDs in order, or `asg:NAME`. */
    readonly targets: readonly string[] | `asg:${string}`;
    readonly what: string;
    /** A release folder whose `current` ssm-send moves to `release` first (and back on failure). */
    readonly pointer?: { readonly folder: string; readonly release: string };
    /** How long a VM may take to come online (WSS_EDGE_ONLINE_TIMEOUT; default 300 s, a twin's first boot). */
    readonly onlineTimeoutSeconds?: number;
    /** Bound on the whole run; the script is killed after it. */
    readonly timeoutMs?: number;
}

/**
 * Runs the real deploy/ssm-send.sh against the stand-ins, with the environment `pulumi up` gives
 * it (components/releaseChannel.ts) and the endpoint overrides pointing at them; Debian's AWS CLI
 * first on PATH. Resolves with its exit code and output.
 */
export function ssmSend(ssm: SsmStandIn, store: TwinReleaseStore, request: SsmSendRequest): Promise<RemoteResult> {
    const environment: NodeJS.ProcessEnv = {
        ...store.cliEnvironment,
        WSS_EDGE_REGION: twinRegion,
        WSS_EDGE_DOCUMENT: request.documentName,
        WSS_EDGE_PARAMETERS: JSON.stringify(Object.fromEntries(Object.entries(request.parameters).map(([key, value]) => [key, [value]]))),
        WSS_EDGE_TARGETS: typeof request.targets === "string" ? request.targets : request.targets.join(" "),
        WSS_EDGE_WHAT: request.what,
        ...(request.pointer
            ? { WSS_EDGE_POINTER: s3Url(store.forTwins, currentKey(request.pointer.folder)), WSS_EDGE_RELEASE: request.pointer.release }
            : {}),
        WSS_EDGE_SSM_ENDPOINT: ssm.endpoint,
        WSS_EDGE_AUTOSCALING_ENDPOINT: ssm.endpoint,
        WSS_EDGE_S3_ENDPOINT: store.endpointHere,
        WSS_EDGE_POLL_SECONDS: "1",
        WSS_EDGE_ONLINE_TIMEOUT: String(request.onlineTimeoutSeconds ?? 300),
    };
    const timeoutMs = request.timeoutMs ?? 600000;
    return new Promise((done, fail) => {
        // Its own process group: a run killed at the bound takes its `aws` and `sleep` with it.
        const child = spawn("bash", [join(__dirname, "..", "deploy", "ssm-send.sh")], {
            env: environment,
            stdio: ["ignore", "pipe", "pipe"],
            detached: true,
        });
        let stdout = "";
        let stderr = "";
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            try {
                if (child.pid) process.kill(-child.pid, "SIGKILL");
            } catch {
                // gone already
            }
        }, timeoutMs);
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("error", (error) => {
            clearTimeout(timer);
            fail(error);
        });
        child.on("close", (code) => {
            clearTimeout(timer);
            done({ code: code ?? -1, stdout, stderr: timedOut ? `${stderr}\nssm-send: killed after ${timeoutMs / 1000} s` : stderr });
        });
    });
}
