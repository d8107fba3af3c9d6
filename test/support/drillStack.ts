/**
 * The local stack with the drills the end-to-end tests run on it: day-two changes (a backend
 * replaced or added, certificates renewed) and looks inside (each backend's sockets, each proxy's
 * health-agent log). Test-only operations live here, not on the product's LocalStack.
 */
import { X509Certificate } from "node:crypto";
import { resolve } from "node:path";
import { LocalStack, type LocalStackOptions, type RunningBackend } from "../../local/localStack";
import { freePort } from "../../local/ports";
import { peerCertificateFingerprint } from "../../local/probes";
import { terminate, waitUntil } from "../../local/processes";
import type { LocalCertificate } from "../../pki/openSslIssuer";

export class DrillStack extends LocalStack {
    static override start(options: LocalStackOptions): Promise<DrillStack> {
        return LocalStack.bringUpAndTrack(new DrillStack(options));
    }

    /** Starts one more backend (its certificate issued first), not yet in the edge's config. */
    override addBackend(): Promise<string> {
        return super.addBackend();
    }

    /** Waits until backend `name` answers its health check. */
    override waitForBackend(name: string, timeoutMs?: number): Promise<void> {
        return super.waitForBackend(name, timeoutMs);
    }

    proxyNames(): string[] {
        return this.proxies.map((p) => p.name);
    }

    /** The health agent's log of proxy `name` (the first by default): one line per transition. */
    backendHealthLog(name = this.proxies[0].name): string {
        return this.proxy(name).agentLog();
    }

    /**
     * Renews the edge's certificate and key and the proxy's client certificate, and deploys
     * them with a reload: new handshakes get the new certificate, open sockets stay up.
     */
    async rotateEdgeCertificates(): Promise<string> {
        await this.issuePki(this.pki.backendCertificates.length, ["edge", "proxy-client"]);
        return this.deploy();
    }

    /** Runs the deploy script of the first proxy with `bundle` on standard input; rejects with its stderr. */
    deployBundle(bundle: string): Promise<string> {
        return this.proxies[0].deployBundle(bundle);
    }

    /**
     * A renewed certificate for backend `name`, as a deploy delivers it on AWS: new key and
     * certificate written in place, then SIGHUP; the app serves new handshakes with them and
     * keeps every open socket. Resolves once the backend presents the new certificate.
     */
    async renewBackendCertificate(name: string): Promise<LocalCertificate> {
        const backend = this.backend(name);
        await this.issuePki(this.pki.backendCertificates.length, [name]);
        await this.writeBackendTls(name);
        if (!backend.process) throw new Error(`local stack: backend ${name} is not running`);
        backend.process.kill("SIGHUP");
        const renewed = this.backendCertificate(name);
        const expected = new X509Certificate(renewed.certificatePem).fingerprint256;
        await waitUntil(
            5000,
            async () => (await peerCertificateFingerprint(this.bindAddress, backend.port, this.asProxy())) === expected,
            `local stack: backend ${name} did not load its renewed certificate`,
        );
        return renewed;
    }

    /**
     * Replaces backend `name` the way the AWS stack rolls one: a successor with a new
     * certificate starts beside it, passes the health gate, takes its place in the upstream
     * (same slot, so the same clients hash to it) with a reload, and only then is the old one
     * stopped; its clients get 1001 and reconnect to the successor. Other backends are untouched.
     * `entry` rolls another version of the app in (default: the one running). A successor that
     * fails the gate is stopped, and the old backend keeps serving.
     */
    async replaceBackend(
        name: string,
        options: { readonly entry?: string } = {},
    ): Promise<{ readonly oldPort: number; readonly newPort: number; readonly pid: number }> {
        const index = this.backends.indexOf(this.backend(name));
        const predecessor = this.backends[index];
        await this.issuePki(this.pki.backendCertificates.length, [name]);
        const entry = options.entry ? resolve(options.entry) : predecessor.entry;
        const successor: RunningBackend = {
            name,
            port: await freePort(this.bindAddress),
            metricsPort: await freePort("127.0.0.1"),
            entry,
            process: undefined,
            pid: 0,
        };
        await this.launchBackend(successor);
        try {
            await this.healthGate(successor);
        } catch (error) {
            if (successor.process) await terminate(successor.process, "SIGTERM");
            throw error;
        }
        this.backends[index] = successor;
        await this.deploy();
        if (predecessor.process) await terminate(predecessor.process, "SIGTERM", this.backendStopGraceMs());
        await this.writeState();
        return { oldPort: predecessor.port, newPort: successor.port, pid: successor.pid };
    }

    /** Sockets each backend holds now, from its own /healthz (undefined when it is down). */
    async backendSocketCounts(): Promise<Record<string, number | undefined>> {
        const entries = await Promise.all(this.backends.map(async (b) => [b.name, await this.backendHealth(b)] as const));
        return Object.fromEntries(entries);
    }
}
