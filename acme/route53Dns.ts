/**
 * DNS-01 through a Route 53 hosted zone: the challenge's TXT record is written with
 * ChangeResourceRecordSets (UPSERT, so a record a failed run left behind is overwritten) and
 * counted as published once GetChange says INSYNC, which Route 53 reports when every one of the
 * zone's name servers answers with it, so the CA's lookup sees it. Cleared with DELETE, which
 * must repeat the record exactly (value and TTL). A TXT record of that name kept in the zone for
 * another purpose is overwritten, then deleted: the name is the CA's.
 *
 * Credentials come from the environment `pulumi up` runs in (the workflows' deploy role, a
 * laptop's AWS_PROFILE), or the named profile (the stack's `aws:profile`); Route 53 is global, so
 * the region only picks the endpoint's partition.
 */
import { ChangeResourceRecordSetsCommand, GetChangeCommand, Route53Client } from "@aws-sdk/client-route-53";
import type { Dns01 } from "./certificateIssuer";

const ttlSeconds = 60;
/** Route 53 documents propagation "generally within 60 seconds"; give it five minutes before the order fails. */
const syncTimeoutMs = 300_000;
const pollMs = 5_000;

export class Route53Dns implements Dns01 {
    private readonly client: Route53Client;
    private readonly pollMs: number;

    /** `endpoint`: Route 53's API elsewhere than AWS's (a stand-in); by default AWS's own. `profile`: a named profile of the AWS config files. */
    constructor(
        private readonly hostedZoneId: string,
        options: { readonly endpoint?: string; readonly pollMs?: number; readonly profile?: string } = {},
    ) {
        this.client = new Route53Client({
            region: process.env.AWS_REGION ?? "us-east-1",
            endpoint: options.endpoint,
            ...(options.profile ? { profile: options.profile } : {}),
        });
        this.pollMs = options.pollMs ?? pollMs;
    }

    async set(name: string, value: string): Promise<void> {
        const changeId = await this.change("UPSERT", name, value);
        const deadline = Date.now() + syncTimeoutMs;
        for (;;) {
            const { ChangeInfo } = await this.client.send(new GetChangeCommand({ Id: changeId }));
            if (ChangeInfo?.Status === "INSYNC") return;
            if (Date.now() > deadline)
                throw new Error(
                    `Route 53 zone ${this.hostedZoneId}: ${name} TXT not in sync after ${syncTimeoutMs / 1000} s (change ${changeId})`,
                );
            await new Promise((resolve) => setTimeout(resolve, this.pollMs));
        }
    }

    async clear(name: string, value: string): Promise<void> {
        await this.change("DELETE", name, value);
    }

    private async change(action: "UPSERT" | "DELETE", name: string, value: string): Promise<string> {
        const { ChangeInfo } = await this.client.send(
            new ChangeResourceRecordSetsCommand({
                HostedZoneId: this.hostedZoneId,
                ChangeBatch: {
                    Comment: "ACME DNS-01 challenge of the wss-edge stack",
                    Changes: [
                        {
                            Action: action,
                            ResourceRecordSet: {
                                Name: name,
                                Type: "TXT",
                                TTL: ttlSeconds,
                                // A TXT record's text is quoted in the zone file's syntax.
                                ResourceRecords: [{ Value: JSON.stringify(value) }],
                            },
                        },
                    ],
                },
            }),
        );
        if (!ChangeInfo?.Id) throw new Error(`Route 53 zone ${this.hostedZoneId}: ${action} of ${name} TXT returned no change`);
        return ChangeInfo.Id;
    }
}
