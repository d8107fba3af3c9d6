/**
 * certificate acme on this machine: the edge's certificate from Debian's Pebble, standing in for
 * Let's Encrypt, by DNS-01 through Pebble's DNS server, standing in for the Route 53 zone. The
 * same issuer as on AWS (acme/certificateIssuer.ts), one certificate for every proxy, and renewed
 * while the stack runs, once a third of its lifetime is left, as the scheduled `pulumi up` renews
 * it on AWS. Clients trust Pebble's root (`rootPath`), made anew at each start.
 */
import { X509Certificate } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type IssuedCertificate, issueCertificate, newAccountKey, renewalDue } from "../acme/certificateIssuer";
import { ChallengeTestServerDns } from "../acme/challengeTestServer";
import { type PebbleCa, startPebble } from "../acme/pebbleStandIn";

/** As Let's Encrypt's: 90 days. */
export const defaultAcmeLifetimeSeconds = 90 * 86_400;
/** How often the CA's renewal information is asked again (well within setTimeout's 24.8 days). */
const askAgainMs = 6 * 3_600_000;
/** After a failed renewal: try again in a tenth of what is left, between 1 s and an hour. */
const retryMs = (leftMs: number) => Math.min(3_600_000, Math.max(1_000, leftMs / 10));

export class LocalAcme {
    private timer: NodeJS.Timeout | undefined;
    private stopped = false;
    /** A renewal under way (its order and delivery), which stop waits for. */
    private inFlight: Promise<void> | undefined;

    private constructor(
        private readonly ca: PebbleCa,
        private readonly account: { readonly directoryUrl: string; readonly accountKeyPem: string; readonly directoryCaPem: string },
        private readonly domain: string,
        /** Where clients find the root to trust, and the root. */
        readonly rootPath: string,
        readonly rootPem: string,
        private current: IssuedCertificate,
    ) {}

    /** Starts the stand-ins in `dir`, and obtains the first certificate for `domain`. */
    static async start(options: { readonly dir: string; readonly domain: string; readonly lifetimeSeconds: number }): Promise<LocalAcme> {
        const ca = await startPebble({ dir: options.dir, certificateValiditySeconds: options.lifetimeSeconds });
        try {
            const account = { directoryUrl: ca.directoryUrl, accountKeyPem: await newAccountKey(), directoryCaPem: ca.listenerCaPem };
            const rootPath = join(options.dir, "root.pem");
            const rootPem = await ca.root();
            await writeFile(rootPath, rootPem);
            const first = await issueCertificate(account, options.domain, new ChallengeTestServerDns(ca.dnsManagementUrl));
            return new LocalAcme(ca, account, options.domain, rootPath, rootPem, first);
        } catch (error) {
            await ca.stop();
            throw error;
        }
    }

    get certificate(): IssuedCertificate {
        return this.current;
    }

    /** Pebble's processes, for the stack's lock (local:down stops them). */
    get processes(): readonly { readonly pid: number; readonly command: string }[] {
        return this.ca.processes;
    }

    /**
     * From now on, renews the certificate when it is due (`renewalDue`: its renewal time, or
     * earlier if the CA's renewal information says so) and hands each new one to
     * `deliver` (which deploys it to every proxy). A failed renewal or delivery is reported to
     * `report` and tried again while the certificate is still valid.
     */
    renewAutomatically(deliver: (certificate: IssuedCertificate) => Promise<void>, report: (error: Error) => void): void {
        // Due at its renewal time, or earlier if the CA's renewal information says so; asked again
        // every six hours, since the CA moves its window when it means to revoke the certificate.
        const schedule = async () => {
            if (this.stopped) return;
            const due = await renewalDue(this.account, this.current.certificatePem);
            const dueMs = due.at.getTime() - Date.now();
            const waitMs = Math.max(0, Math.min(dueMs, askAgainMs));
            if (!this.stopped) this.timer = setTimeout(() => (this.inFlight = attempt(dueMs > waitMs)), waitMs);
        };
        const attempt = async (notYet: boolean) => {
            if (notYet || this.stopped) return void schedule();
            try {
                const renewed = await issueCertificate(this.account, this.domain, new ChallengeTestServerDns(this.ca.dnsManagementUrl));
                if (this.stopped) return;
                await deliver(renewed);
                this.current = renewed;
                void schedule();
            } catch (error) {
                if (this.stopped) return;
                report(error as Error);
                const leftMs = Date.parse(new X509Certificate(this.current.certificatePem).validTo) - Date.now();
                this.timer = setTimeout(() => (this.inFlight = attempt(false)), retryMs(leftMs));
            }
        };
        void schedule();
    }

    /** Stops renewing: a renewal under way finishes its delivery first (nothing is delivered after), then the stand-ins stop. */
    async stop(): Promise<void> {
        this.stopped = true;
        clearTimeout(this.timer);
        await this.inFlight;
        await this.ca.stop();
    }
}
