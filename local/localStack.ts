import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { healthGateTimeoutSeconds } from "../host/backendHost";
import type { UpstreamServer } from "../nginx/edgeConfigSpec";
import { healthPath } from "../nginx/renderNginxConfig";
import { issueWithOpenSsl, type LocalCertificate, type LocalPki } from "../pki/openSslIssuer";
import { backendServerName } from "../pki/pkiSpec";
import {
    backendFleetFile,
    backendTlsOf,
    type EdgePlan,
    edgePkiPlan,
    healthGateCredentials,
    localPlacement,
    planEdge,
    releaseBundle,
} from "../plan/edgePlan";
import { certificateSourceOf, type EdgeSettings, type RawSettings, validateEdgeSettings } from "../settings/edgeSettings";
import { FrontBalancer } from "./frontBalancer";
import { defaultAcmeLifetimeSeconds, LocalAcme } from "./localAcme";
import { LocalProxy } from "./localProxy";
import { nginxOf } from "./platformNginx";
import { canListen, freePort } from "./ports";
import { httpGetText, httpsGet } from "./probes";
import { commandLine, findBinary, isAlive, runScript, stopNginx, terminate, terminatePid, waitUntil } from "./processes";
import { StateLock } from "./stateLock";

export const repositoryRoot = resolve(__dirname, "..");
const backendEntry = join(repositoryRoot, "backend", "server.mjs");
const healthGateScript = join(repositoryRoot, "deploy", "backend-health-gate.sh");

export interface LocalStackOptions {
    /** Holds keys, releases, logs and outputs.json. Its path must be plain (letters, digits, `_.-/`). */
    readonly stateDir: string;
    /** TLS port of the edge; 0 picks a free one. */
    readonly edgePort: number;
    /** Address the edge and backends bind to (default 127.0.0.1). */
    readonly bindAddress?: string;
    /** Edge settings, as Pulumi config holds them (`--set key=value`); AWS placement settings are refused. */
    readonly settings?: RawSettings;
    /** Overrides the ping interval derived from the idle timeout; 0 turns pings off. */
    readonly pingIntervalSeconds?: number;
    /** NGINX workers; several, so that sockets spread under the per-process file limit. */
    readonly workerProcesses?: number;
    readonly nginx?: string;
    /** With certificate acme: how long the ACME stand-in's certificates are valid (default 90 days, as Let's Encrypt's); shorter to watch renewal. */
    readonly acmeLifetimeSeconds?: number;
}

/** The same outputs the AWS stack exports, for a stack on this machine. */
export interface LocalStackOutputs {
    readonly endpoint: string;
    /** The plain-HTTP address that redirects to the endpoint, when the httpRedirect setting is on. */
    readonly httpUrl?: string;
    readonly healthUrl: string;
    /** Path of the CA certificate that clients trust: the stack's CA, or with certificate acme the ACME stand-in's root. */
    readonly caCertificatePem: string;
    readonly backends: readonly { readonly name: string; readonly address: string; readonly pid: number; readonly entry: string }[];
    /** The first proxy's NGINX pid file. */
    readonly nginxPidFile: string;
    /** Each NGINX proxy: its name, its master's PID, its TLS port (behind the front when there are several). */
    readonly proxies: readonly { readonly name: string; readonly pid: number; readonly port: number }[];
    /** Prometheus metrics: each proxy's NGINX (through its exporter) and each backend's, on loopback. */
    readonly metrics: readonly { readonly name: string; readonly url: string }[];
    /** The first proxy's metrics exporter. */
    readonly exporterPid: number;
    /** What else runs: the front (HAProxy), exporters, health agents; `command` is what each one's command line shows. */
    readonly processes: readonly { readonly name: string; readonly pid: number; readonly command: string }[];
}

/** A backend process the stack runs, by its name, ports and entry point. */
export interface RunningBackend {
    readonly name: string;
    readonly port: number;
    /** Where its Prometheus metrics are served, on loopback. */
    readonly metricsPort: number;
    /** The app's entry point (backend/server.mjs unless a replacement rolled another version in). */
    readonly entry: string;
    process: ChildProcess | undefined;
    pid: number;
    /** The fleet file it was last given (see announceFleet). */
    fleet?: string;
}

/**
 * The edge on this machine: the openssl-issued PKI, backends as Node processes, and NGINX
 * deployed with the very deploy script the proxy VM runs. `stop()` ends every process it
 * started; tests call it in `finally`/`after` so nothing outlives them.
 */
export class LocalStack {
    protected readonly backends: RunningBackend[] = [];
    /** One NGINX, or several behind the front (the proxyCount setting). */
    protected readonly proxies: LocalProxy[] = [];
    private front: FrontBalancer | undefined;
    protected pki!: LocalPki;
    /** With certificate acme: the ACME stand-in, and the edge's certificate from it. */
    private acme: LocalAcme | undefined;
    private readonly renewalListeners: (() => Promise<void>)[] = [];
    protected settings!: EdgeSettings;
    private edgePort = 0;
    /** The plain-HTTP port clients are redirected from (the httpRedirect setting); 0 when off. */
    private httpPort = 0;
    private workerProcesses: number;
    private stopped = false;
    /** Held from the first step of a start until stop: nothing of another stack is ever touched. */
    private lock: StateLock | undefined;
    /** Every backend process started, a successor not yet in service too, for the lock. */
    private readonly launched = new Set<RunningBackend>();

    protected constructor(private options: LocalStackOptions) {
        this.workerProcesses = options.workerProcesses ?? 2;
    }

    static start(options: LocalStackOptions): Promise<LocalStack> {
        return LocalStack.bringUpAndTrack(new LocalStack(options));
    }

    /** Brings `stack` up (a subclass's too), stopping what it started if it fails; tracked for `interruptStarts`. */
    protected static async bringUpAndTrack<T extends LocalStack>(stack: T): Promise<T> {
        const started = (async () => {
            try {
                await stack.bringUp();
                return stack;
            } catch (error) {
                await stack.stop();
                throw error;
            }
        })();
        LocalStack.starting.add(started);
        return started.finally(() => LocalStack.starting.delete(started));
    }

    /** Starts in progress in this process. */
    private static readonly starting = new Set<Promise<unknown>>();
    private static interrupted = false;

    /**
     * Interrupts every start in progress in this process (Ctrl-C during `npm start` or a bench):
     * each stops at its next step, stops what it had started, and rejects. Resolves once all have;
     * no later start begins.
     */
    static async interruptStarts(): Promise<void> {
        LocalStack.interrupted = true;
        await Promise.allSettled([...LocalStack.starting]);
    }

    private checkInterrupted(): void {
        if (LocalStack.interrupted) throw new Error("local stack: start interrupted");
    }

    get stateDir(): string {
        return resolve(this.options.stateDir);
    }
    protected get bindAddress(): string {
        return this.options.bindAddress ?? "127.0.0.1";
    }
    /** The proxies' platform (the proxyPlatform setting), which names the NGINX they run. */
    get proxyPlatform(): EdgeSettings["proxyPlatform"] {
        return this.settings.proxyPlatform;
    }

    get nginxPidFile(): string {
        return this.proxies[0].pidFile;
    }
    /** The CA certificate clients trust (the stack's, or the ACME stand-in's root). */
    get caCertificatePath(): string {
        return this.acme?.rootPath ?? this.pki.caCertificatePath;
    }
    /**
     * Runs `listener` after each renewal of the edge's ACME certificate has reached this stack's
     * proxies: where the edge is served elsewhere too (the VM twin), it delivers the certificate
     * there. A listener that fails fails the renewal, which is tried again.
     */
    onCertificateRenewed(listener: () => Promise<void>): void {
        this.renewalListeners.push(listener);
    }

    /** The PEM of the CA clients trust (the file at caCertificatePath). */
    get clientCaPem(): string {
        return this.acme?.rootPem ?? this.pki.caCertificatePem;
    }
    /** The certificates this stack issued (what a user finds under <state>/pki). */
    get certificates(): LocalPki {
        return this.pki;
    }
    /** Address and port of a backend, for talking to it directly. */
    backendAddress(name: string): { host: string; port: number } {
        return { host: this.bindAddress, port: this.backend(name).port };
    }
    get outputs(): LocalStackOutputs {
        return {
            endpoint: `wss://localhost:${this.edgePort}/`,
            ...(this.httpPort ? { httpUrl: `http://localhost:${this.httpPort}/` } : {}),
            healthUrl: `https://localhost:${this.edgePort}${healthPath}`,
            caCertificatePem: this.caCertificatePath,
            backends: this.backends.map((b) => ({ name: b.name, address: `${this.bindAddress}:${b.port}`, pid: b.pid, entry: b.entry })),
            nginxPidFile: this.nginxPidFile,
            proxies: this.proxies.map((p) => ({ name: p.name, pid: p.masterPid() ?? 0, port: p.port })),
            metrics: [
                ...this.proxies.map((p) => ({ name: this.proxies.length === 1 ? "nginx" : `nginx-${p.name}`, url: p.metricsUrl })),
                ...this.backends.map((b) => ({ name: b.name, url: `http://127.0.0.1:${b.metricsPort}/metrics` })),
            ],
            exporterPid: this.proxies[0]?.exporterPid ?? 0,
            processes: [
                ...(this.front ? [{ name: "front (HAProxy)", pid: this.front.pid, command: "haproxy" }] : []),
                ...this.proxies.flatMap((p) => p.helpers),
            ],
        };
    }
    get edgeAddress(): { host: string; port: number } {
        return { host: this.bindAddress, port: this.edgePort };
    }
    backendNames(): string[] {
        return this.backends.map((b) => b.name);
    }
    protected proxy(name: string): LocalProxy {
        const proxy = this.proxies.find((p) => p.name === name);
        if (!proxy) throw new Error(`local stack: no proxy named ${name}`);
        return proxy;
    }

    private async bringUp(): Promise<void> {
        if (!/^[A-Za-z0-9_./-]+$/.test(this.stateDir)) {
            throw new Error(
                `local stack: state folder ${JSON.stringify(this.stateDir)} must be a plain path (letters, digits, '_', '.', '-', '/'): NGINX config paths are written unquoted`,
            );
        }
        this.settings = validateEdgeSettings(this.options.settings ?? {}, "local");
        const nginxBinary = requireBinary(
            this.options.nginx ?? nginxOf(this.settings.proxyPlatform, join(this.stateDir, "bin")),
            "NGINX",
            "nginx-light",
        );
        requireBinary("openssl", "openssl", "openssl");
        requireBinary("curl", "curl", "curl");
        const exporterBinary = requireBinary("prometheus-nginx-exporter", "NGINX's metrics exporter", "prometheus-nginx-exporter");
        const { proxyCount } = this.settings;
        const haproxyBinary = proxyCount > 1 ? requireBinary("haproxy", "HAProxy (the local load balancer)", "haproxy") : "";

        this.checkInterrupted();
        await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
        this.lock = StateLock.acquire(this.stateDir);
        this.edgePort = this.options.edgePort || (await freePort(this.bindAddress));
        await assertPortFree(this.bindAddress, this.edgePort, "edge");
        if (this.settings.httpRedirect) this.httpPort = await freePort(this.bindAddress);
        // Clients on IPv6's loopback too, as a dual-stack edge on AWS serves IPv6 clients; not where the host has no IPv6.
        const ipv6Address =
            this.bindAddress === "127.0.0.1" &&
            (await canListen("::1", this.edgePort)) &&
            (this.httpPort === 0 || (await canListen("::1", this.httpPort)))
                ? "::1"
                : undefined;
        // One proxy serves the edge's ports itself; several sit behind the front on ports of their own.
        const single = proxyCount === 1;
        for (let i = 1; i <= proxyCount; i++) {
            this.proxies.push(
                await LocalProxy.create({
                    name: `proxy-${i}`,
                    root: join(this.stateDir, single ? "edge" : `proxy-${i}`),
                    bindAddress: this.bindAddress,
                    port: single ? this.edgePort : await freePort(this.bindAddress),
                    proxyProtocolFrom: single ? undefined : [this.bindAddress],
                    ipv6Address: single ? ipv6Address : undefined,
                    httpRedirectPort: this.httpPort === 0 ? undefined : single ? this.httpPort : await freePort(this.bindAddress),
                    nginxBinary,
                    platform: this.settings.proxyPlatform,
                    exporterBinary,
                }),
            );
        }
        if (certificateSourceOf(this.settings) === "acme") {
            this.acme = await LocalAcme.start({
                dir: join(this.stateDir, "acme"),
                domain: "localhost",
                lifetimeSeconds: this.options.acmeLifetimeSeconds ?? defaultAcmeLifetimeSeconds,
            });
            this.recordHolders();
        }
        await this.issuePki(this.settings.backendCount);

        for (let i = 0; i < this.settings.backendCount; i++) {
            this.checkInterrupted();
            await this.addBackend();
        }
        await Promise.all(this.backends.map((b) => this.waitForBackend(b)));
        this.checkInterrupted();
        await this.deploy();
        this.recordHolders();
        this.checkInterrupted();
        if (proxyCount > 1) {
            const dir = join(this.stateDir, "front");
            await mkdir(dir, { recursive: true });
            this.front = await FrontBalancer.start({
                dir,
                bindAddress: this.bindAddress,
                ipv6Address,
                // The NLB's listeners: the edge's port, and the redirect's when it is on.
                listeners: [
                    {
                        name: "edge",
                        port: this.edgePort,
                        targets: this.proxies.map((p) => ({ name: p.name, address: this.bindAddress, port: p.port })),
                    },
                    ...(this.httpPort === 0
                        ? []
                        : [
                              {
                                  name: "http",
                                  port: this.httpPort,
                                  targets: this.proxies.map((p) => ({
                                      name: p.name,
                                      address: this.bindAddress,
                                      port: p.httpRedirectPort ?? 0,
                                  })),
                              },
                          ]),
                ],
                haproxyBinary,
            });
            this.recordHolders();
        }
        await this.waitForEdge();
        for (const proxy of this.proxies) {
            this.checkInterrupted();
            await proxy.startHelpers();
            this.recordHolders();
        }
        this.checkInterrupted();
        await this.writeState();
        this.acme?.renewAutomatically(
            async (renewed) => {
                this.pki = { ...this.pki, edgeCertificateChainPem: renewed.certificatePem, edgePrivateKeyPem: renewed.privateKeyPem };
                await this.deploy();
                for (const listener of this.renewalListeners) await listener();
            },
            (error) => console.error(`local stack: renewing the edge's ACME certificate failed, trying again: ${error.message}`),
        );
    }

    /** Sockets each backend and each proxy's NGINX hold now, read from their Prometheus metrics (undefined when down). */
    async metricsSnapshot(): Promise<{
        /** All proxies together. */
        readonly nginxActive?: number;
        readonly proxies: Record<string, number | undefined>;
        readonly backends: Record<string, number | undefined>;
    }> {
        const value = (text: string | undefined, metric: string) => {
            const match = text === undefined ? null : new RegExp(`^${metric} (\\S+)$`, "m").exec(text);
            return match ? Number(match[1]) : undefined;
        };
        const texts = await Promise.all(this.outputs.metrics.map((m) => httpGetText(m.url)));
        const proxies = this.proxies.map((p, i) => [p.name, value(texts[i], "nginx_connections_active")] as const);
        const counted = proxies.map(([, n]) => n).filter((n): n is number => n !== undefined);
        return {
            nginxActive: counted.length === 0 ? undefined : counted.reduce((a, b) => a + b, 0),
            proxies: Object.fromEntries(proxies),
            backends: Object.fromEntries(
                this.backends.map((b, i) => [b.name, value(texts[this.proxies.length + i], "wss_backend_open_sockets")]),
            ),
        };
    }

    protected async issuePki(backendCount: number, renew: readonly string[] = []): Promise<void> {
        const spec = edgePkiPlan(
            { backendCount },
            { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"], certificate: certificateSourceOf(this.settings) },
        );
        this.pki = await issueWithOpenSsl(spec, join(this.stateDir, "pki"), { renew, edgeCertificate: this.acme?.certificate });
    }

    /** Starts one more backend (its certificate issued first), not yet in the edge's config. */
    protected async addBackend(): Promise<string> {
        const index = this.backends.length;
        if (this.pki.backendCertificates.length <= index) await this.issuePki(index + 1);
        const name = this.pki.backendCertificates[index].name;
        const port = await freePort(this.bindAddress);
        const backend: RunningBackend = {
            name,
            port,
            metricsPort: await freePort("127.0.0.1"),
            entry: backendEntry,
            process: undefined,
            pid: 0,
        };
        this.backends.push(backend);
        await this.launchBackend(backend);
        return name;
    }

    /** The certificate this stack issued for backend `name`. */
    protected backendCertificate(name: string): LocalCertificate {
        const certificate = this.pki.backendCertificates.find((c) => c.name === name);
        if (!certificate) throw new Error(`local stack: no certificate issued for ${name}`);
        return certificate;
    }

    /** Writes a backend's TLS files, each renamed into place so a reload never reads half of one. */
    protected async writeBackendTls(name: string): Promise<string> {
        const certificate = this.backendCertificate(name);
        const tlsDir = join(this.stateDir, "backends", name);
        await mkdir(tlsDir, { recursive: true, mode: 0o700 });
        for (const [file, content] of Object.entries(backendTlsOf(certificate, this.pki.caCertificatePem))) {
            await writeFile(join(tlsDir, `.${file}.next`), content, { mode: 0o600 });
            await rename(join(tlsDir, `.${file}.next`), join(tlsDir, file));
        }
        return tlsDir;
    }

    protected async launchBackend(backend: RunningBackend): Promise<void> {
        const tlsDir = await this.writeBackendTls(backend.name);
        // It starts knowing the fleet as it is: nothing of its own to move.
        backend.fleet = undefined;
        await this.writeFleetFile(backend);
        const log = openSync(join(this.stateDir, "backends", `${backend.name}.log`), "a");
        const pings = this.options.pingIntervalSeconds ?? this.plan().backendEnvironment.PING_INTERVAL_SECONDS;
        const child = spawn(process.execPath, [backend.entry], {
            env: {
                ...process.env,
                BACKEND_NAME: backend.name,
                HOST: this.bindAddress,
                PORT: String(backend.port),
                TLS_DIR: tlsDir,
                ...this.plan().backendEnvironment,
                PING_INTERVAL_SECONDS: String(pings),
                METRICS_HOST: "127.0.0.1",
                METRICS_PORT: String(backend.metricsPort),
                FLEET_FILE: this.fleetFilePath(backend),
            },
            stdio: ["ignore", log, log],
            // Its own process group: a Ctrl-C in the terminal reaches the stack, which then
            // stops the backends in order, instead of reaching everything at once.
            detached: true,
        });
        closeSync(log);
        backend.process = child;
        backend.pid = child.pid ?? 0;
        this.launched.add(backend);
        child.on("exit", () => {
            if (backend.process === child) backend.process = undefined;
        });
        this.recordHolders();
    }

    /**
     * The edge's plan placed on this machine for proxy `proxyName` (the first by default), in front
     * of `upstreams` (by default its own backends). Proxies differ only in their ports and paths:
     * the upstream and its hashing are the same on each, so a client lands on the same backend
     * whichever proxy the front picks.
     */
    plan(
        upstreams: readonly UpstreamServer[] = this.backends.map((b) => ({ address: this.bindAddress, port: b.port })),
        proxyName = this.proxies[0].name,
    ): EdgePlan {
        return planEdge(this.settings, localPlacement(this.proxy(proxyName).hostProfile(this.workerProcesses), this.edgePort, upstreams));
    }

    /** The nginx.conf this stack deploys to proxy `proxyName` (the first by default) for `upstreams`. */
    renderConfig(upstreams?: readonly UpstreamServer[], proxyName?: string): string {
        return this.plan(upstreams, proxyName).nginxConfig;
    }

    /**
     * Renders the config for the current backends and deploys it to each proxy in turn, as the
     * AWS stack rolls a release: the next proxy starts only once the previous one has reloaded
     * and answers its health check (the deploy script checks), so the front always has
     * proxies serving. Resolves with each deploy's output.
     */
    async deploy(): Promise<string> {
        const outputs: string[] = [];
        for (const proxy of this.proxies) {
            outputs.push(await proxy.deployBundle(releaseBundle(this.plan(undefined, proxy.name), this.pki)));
            // A running stack follows the activeHealthChecks setting of the new release.
            if (proxy.exporterPid !== 0) {
                await proxy.startAgent();
                await proxy.stopAgentIfRemoved();
            }
        }
        await this.announceFleet();
        return outputs.join("");
    }

    private fleetFilePath(backend: RunningBackend): string {
        return join(this.stateDir, "backends", backend.name, "fleet.json");
    }

    /** Writes a backend's fleet file as the plan has it now; true when it changed. */
    private async writeFleetFile(backend: RunningBackend): Promise<boolean> {
        const text = `${JSON.stringify(backendFleetFile(this.plan(), { address: this.bindAddress, port: backend.port }))}\n`;
        if (text === backend.fleet) return false;
        const path = this.fleetFilePath(backend);
        await writeFile(`${path}.next`, text);
        await rename(`${path}.next`, path);
        backend.fleet = text;
        return true;
    }

    /**
     * Tells every backend the fleet every proxy now routes by (after a deploy), as the AWS stack
     * does once its rollout is done: each one whose file changed gets SIGHUP and moves the
     * sockets whose key now hashes to another backend, over rebalanceSeconds.
     */
    protected async announceFleet(): Promise<void> {
        for (const backend of this.backends) {
            if ((await this.writeFleetFile(backend)) && backend.process) backend.process.kill("SIGHUP");
        }
    }

    /** Deploys `config` with the stack's certificates to the first proxy, through the deploy script. */
    deployConfig(config: string): Promise<string> {
        return this.proxies[0].deployBundle(
            releaseBundle(
                { nginxConfig: config, healthAgent: this.settings.activeHealthChecks, platform: this.settings.proxyPlatform },
                this.pki,
            ),
        );
    }

    /**
     * The health gate the AWS stack runs on the proxy before pointing NGINX at a backend, run
     * here with the same script: /healthz over mutual TLS with the proxy's client certificate.
     */
    protected async healthGate(backend: RunningBackend): Promise<string> {
        const credentials = healthGateCredentials(this.pki);
        const args = [backend.name, this.bindAddress, String(backend.port), backendServerName, String(healthGateTimeoutSeconds)];
        const gate = new AbortController();
        const child = backend.process;
        if (!child || child.exitCode !== null) throw this.exitedWhileStarting(backend);
        // A backend that dies while starting fails the gate at once instead of at its timeout.
        const exited = new Promise<never>((_, fail) => child.once("exit", () => fail(this.exitedWhileStarting(backend))));
        try {
            return await Promise.race([runScript(healthGateScript, args, credentials, {}, gate.signal), exited]);
        } finally {
            gate.abort();
        }
    }

    private exitedWhileStarting(backend: RunningBackend): Error {
        return new Error(
            `local stack: backend ${backend.name} exited while starting; its log:\n${tail(join(this.stateDir, "backends", `${backend.name}.log`))}`,
        );
    }

    /** TLS client options with which this stack talks to its backends as the proxy does. */
    protected asProxy() {
        return {
            ca: this.pki.caCertificatePem,
            cert: this.pki.proxyClientCertificate.certificatePem,
            key: this.pki.proxyClientCertificate.privateKeyPem,
            servername: backendServerName,
        };
    }

    /** Changes the number of NGINX workers and redeploys (a reload). */
    async setWorkerProcesses(count: number): Promise<string> {
        this.workerProcesses = count;
        return this.deploy();
    }

    /**
     * Applies new settings (e.g. a shorter idle timeout) and redeploys, as `pulumi up` would. A
     * new backendCount starts the new backends first (each healthy before any proxy routes to
     * it) or, fewer, deploys without the last ones and then stops them (their sockets closed
     * over closeSpreadSeconds); after the deploy, the backends move the sockets whose key now
     * hashes elsewhere (announceFleet).
     */
    async reconfigure(settings: RawSettings): Promise<string> {
        const next = validateEdgeSettings({ ...this.options.settings, ...settings }, "local");
        if (next.proxyCount !== this.settings.proxyCount)
            throw new Error(`local stack: proxyCount is ${this.settings.proxyCount}; restart the stack to run ${next.proxyCount} proxies`);
        if (next.proxyPlatform !== this.settings.proxyPlatform)
            throw new Error(
                `local stack: proxyPlatform is ${this.settings.proxyPlatform}; restart the stack to run ${next.proxyPlatform}'s NGINX`,
            );
        this.options = { ...this.options, settings: { ...this.options.settings, ...settings } };
        this.settings = next;
        const added: RunningBackend[] = [];
        while (this.backends.length < next.backendCount) added.push(this.backend(await this.addBackend()));
        await Promise.all(added.map((b) => this.waitForBackend(b)));
        const leaving = this.backends.splice(next.backendCount);
        const output = await this.deploy();
        await Promise.all(leaving.map((b) => (b.process ? terminate(b.process, "SIGTERM", this.backendStopGraceMs()) : undefined)));
        await this.writeState();
        return output;
    }

    protected async waitForBackend(backend: RunningBackend | string, timeoutMs = 10000): Promise<void> {
        const b = typeof backend === "string" ? this.backend(backend) : backend;
        await waitUntil(
            timeoutMs,
            async () => {
                if (b.process === undefined || b.process.exitCode !== null) throw this.exitedWhileStarting(b);
                return (await this.backendHealth(b)) !== undefined;
            },
            `local stack: backend ${b.name} on ${this.bindAddress}:${b.port} did not become healthy`,
        );
    }

    private async waitForEdge(): Promise<void> {
        await waitUntil(
            10000,
            async () =>
                (
                    await httpsGet(this.bindAddress, this.edgePort, healthPath, {
                        ca: this.acme?.rootPem ?? this.pki.caCertificatePem,
                        servername: "localhost",
                    })
                )?.status === 200,
            `local stack: edge on ${this.bindAddress}:${this.edgePort} did not answer ${healthPath}; see ${this.proxies.map((p) => p.errorLog).join(", ")}`,
        );
    }

    protected async backendHealth(b: RunningBackend): Promise<number | undefined> {
        const response = await httpsGet(this.bindAddress, b.port, healthPath, this.asProxy());
        return response?.status === 200 ? (JSON.parse(response.body) as { sockets: number }).sockets : undefined;
    }

    protected backend(name: string): RunningBackend {
        const b = this.backends.find((x) => x.name === name);
        if (!b) throw new Error(`local stack: no backend named ${name}`);
        return b;
    }

    /**
     * Sends `signal` to a backend and waits for it to exit: after SIGTERM it closes its sockets
     * over the closeSpreadSeconds window, which it gets in full and 10 s more, as docker gives it on AWS.
     */
    async stopBackend(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
        const b = this.backend(name);
        if (b.process) await terminate(b.process, signal, this.backendStopGraceMs());
    }

    protected backendStopGraceMs(): number {
        return (this.settings.closeSpreadSeconds + 10) * 1000;
    }

    /** Starts a stopped backend again on its old port. */
    async restartBackend(name: string): Promise<void> {
        const b = this.backend(name);
        if (b.process) throw new Error(`local stack: backend ${name} is still running`);
        await this.launchBackend(b);
        await this.waitForBackend(b);
        // Its new PID, so that local:down finds it.
        await this.writeState();
    }

    /** The NGINX master of proxy `name` (the first by default), if it runs. */
    nginxMasterPid(name = this.proxies[0]?.name): number | undefined {
        return name === undefined ? undefined : this.proxy(name).masterPid();
    }

    /**
     * Stops NGINX and every backend this stack started, and frees its folder. Safe to call more
     * than once; a stack that never got its folder's lock touches nothing.
     */
    async stop(): Promise<void> {
        if (this.stopped) return;
        this.stopped = true;
        if (!this.lock) return;
        await this.acme?.stop();
        await this.front?.stop();
        await Promise.all(this.proxies.map((p) => p.stop()));
        // SIGINT: all at once, as nothing is left to spread the reconnects onto.
        await Promise.all(this.backends.map((b) => (b.process ? terminate(b.process, "SIGINT") : undefined)));
        this.lock.release();
    }

    /** Writes outputs.json, and names in the lock every process that holds this stack. */
    protected async writeState(): Promise<void> {
        // Renamed into place: a reader (local:down, a bench being interrupted) never sees half of it.
        await writeFile(join(this.stateDir, ".outputs.json.next"), `${JSON.stringify(this.outputs, null, 2)}\n`);
        await rename(join(this.stateDir, ".outputs.json.next"), join(this.stateDir, "outputs.json"));
        this.recordHolders();
    }

    /** Names in the lock every process of this stack that runs now (called as each one starts). */
    private recordHolders(): void {
        const running = [
            ...(this.front ? [{ pid: this.front.pid, command: "haproxy" }] : []),
            ...(this.acme?.processes ?? []),
            ...this.proxies.flatMap((p) => {
                const master = p.masterPid();
                return [...(master ? [{ pid: master, command: nginxMasterCommand }] : []), ...p.helpers];
            }),
            ...[...this.launched].filter((b) => b.process !== undefined).map((b) => ({ pid: b.pid, command: b.entry })),
        ].map(({ pid, command }) => ({ pid, command }));
        this.lock?.record({ pids: [process.pid, ...running.map((p) => p.pid)], port: this.edgePort, processes: running });
    }
}

/**
 * Stops a stack that `npm run local:up` (or an `npm start` in another terminal) left running in
 * `stateDir`, and frees the folder. Only processes that stack recorded are touched, each checked
 * to still be what it was (a reused pid is left alone).
 */
export async function stopDetachedStack(stateDir: string): Promise<string[]> {
    const stopped: string[] = [];
    const holder = StateLock.read(stateDir);
    // A foreground `npm start`: ask it to stop its own stack, as Ctrl-C would.
    const starter = holder?.pids[0];
    if (starter !== undefined && starter !== process.pid && isAlive(starter) && commandLine(starter).includes(join("local", "cli.ts"))) {
        await terminatePid(starter, "SIGTERM", 20000);
        stopped.push(`npm start (pid ${starter})`);
    }
    const outputsPath = join(stateDir, "outputs.json");
    if (existsSync(outputsPath)) {
        const outputs = readOutputs(await readFile(outputsPath, "utf8"));
        // The front and the health agents first: neither must act on proxies that are going away.
        for (const helper of outputs.processes ?? []) {
            if (isAlive(helper.pid) && commandLine(helper.pid).includes(helper.command)) {
                await terminatePid(helper.pid, "SIGTERM");
                stopped.push(`${helper.name} (pid ${helper.pid})`);
            }
        }
        // A proxy's master may have changed since outputs.json was written (a restart): its pid file says.
        const pidFiles = [
            outputs.nginxPidFile,
            ...(outputs.proxies ?? []).map((p) => pidFileBeside(outputs.nginxPidFile, p.name, stateDir)),
        ];
        for (const pidFile of [...new Set(pidFiles)]) {
            const master = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").trim()) : 0;
            if (isAlive(master) && commandLine(master).startsWith(nginxMasterCommand)) {
                await stopNginx(master);
                stopped.push(`nginx (pid ${master})`);
            }
        }
        for (const backend of outputs.backends) {
            if (isAlive(backend.pid) && commandLine(backend.pid).includes(backend.entry ?? backendEntry)) {
                // The whole stack goes: its sockets close at once (SIGINT), not spread over the window.
                await terminatePid(backend.pid, "SIGINT");
                stopped.push(`${backend.name} (pid ${backend.pid})`);
            }
        }
    }
    // A start that was interrupted wrote no outputs.json: the lock names what it had started, and
    // an NGINX it was deploying may only have got as far as its pid file.
    for (const pidFile of nginxPidFiles(stateDir)) {
        const master = Number(readFileSync(pidFile, "utf8").trim());
        if (isAlive(master) && commandLine(master).startsWith(nginxMasterCommand)) {
            await stopNginx(master);
            stopped.push(`nginx (pid ${master})`);
        }
    }
    for (const { pid, command } of holder?.processes ?? []) {
        if (pid !== process.pid && isAlive(pid) && commandLine(pid).includes(command)) {
            await terminatePid(pid, "SIGTERM");
            stopped.push(`${basename(command)} (pid ${pid})`);
        }
    }
    StateLock.remove(stateDir);
    return stopped;
}

const nginxMasterCommand = "nginx: master process";

/** outputs.json as a stack wrote it; one cut short (its writer killed mid-write) names nothing, and the lock still does. */
function readOutputs(text: string): LocalStackOutputs {
    try {
        return JSON.parse(text) as LocalStackOutputs;
    } catch {
        return { backends: [], processes: [], proxies: [] } as unknown as LocalStackOutputs;
    }
}

/** The pid files of every proxy of a stack in `stateDir` (`edge/` for one, `proxy-N/` for several). */
function nginxPidFiles(stateDir: string): string[] {
    if (!existsSync(stateDir)) return [];
    return readdirSync(stateDir, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => join(stateDir, entry.name, "run", "nginx.pid"))
        .filter((file) => existsSync(file));
}

/** Where proxy `name` of a stack in `stateDir` keeps its pid file (the first, or only, one's is `firstPidFile`). */
function pidFileBeside(firstPidFile: string, name: string, stateDir: string): string {
    const own = join(stateDir, name, "run", "nginx.pid");
    return existsSync(own) ? own : firstPidFile;
}

function requireBinary(binary: string, what: string, pkg: string): string {
    const path = findBinary(binary);
    if (!path) {
        const install = `apt-get update && apt-get install -y ${pkg}`;
        throw new Error(
            `local stack: ${what} ('${binary}') is not installed. Install it with: ${process.getuid?.() === 0 ? install : `sudo sh -c '${install}'`}`,
        );
    }
    return path;
}

async function assertPortFree(host: string, port: number, what: string): Promise<void> {
    if (!(await canListen(host, port))) {
        throw new Error(`local stack: the ${what} port ${host}:${port} is taken; pick another with --port or EDGE_PORT`);
    }
}

function tail(path: string, lines = 20): string {
    try {
        return readFileSync(path, "utf8").trim().split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}
