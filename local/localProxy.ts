import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { edgeDeployScript } from "../host/proxyHost";
import type { EdgeHostProfile } from "../nginx/edgeConfigFromSettings";
import { freePort } from "./ports";
import { httpGetText } from "./probes";
import { hardFileLimit, isAlive, runScript, stopNginx, terminate, waitUntil } from "./processes";

const repositoryRoot = join(__dirname, "..");
const deployScript = join(repositoryRoot, edgeDeployScript);

export interface LocalProxyOptions {
    /** proxy-1, proxy-2…: its folder, its metrics' name. */
    readonly name: string;
    /** Its own prefix: releases, logs, pid file, health state. */
    readonly root: string;
    readonly bindAddress: string;
    /** Its TLS port: the edge's own with one proxy, a port behind the front with several. */
    readonly port: number;
    /** Addresses whose PROXY protocol header NGINX believes: the front's; omitted with one proxy. */
    readonly proxyProtocolFrom?: readonly string[];
    /** An IPv6 address to answer clients on beside bindAddress (::1), when this proxy faces clients. */
    readonly ipv6Address?: string;
    /** Its plain-HTTP port, which only redirects to the edge (the httpRedirect setting); omitted: none. */
    readonly httpRedirectPort?: number;
    readonly nginxBinary: string;
    /** The proxy platform whose NGINX `nginxBinary` is: the deploy script checks each release is for it. */
    readonly platform: string;
    readonly exporterBinary: string;
}

/**
 * One NGINX proxy of the local stack, as on a proxy VM: NGINX deployed by the deploy script,
 * Debian's metrics exporter reading its stub_status, and the backend health agent that the
 * deploy installs under its prefix.
 */
export class LocalProxy {
    private exporter: ChildProcess | undefined;
    private agent: ChildProcess | undefined;

    private constructor(
        readonly options: LocalProxyOptions,
        /** NGINX's stub_status (loopback) and the exporter's metrics port. */
        readonly statusPort: number,
        readonly exporterPort: number,
    ) {}

    static async create(options: LocalProxyOptions): Promise<LocalProxy> {
        await mkdir(join(options.root, "run", "tmp"), { recursive: true, mode: 0o700 });
        await mkdir(join(options.root, "logs"), { recursive: true });
        return new LocalProxy(options, await freePort("127.0.0.1"), await freePort("127.0.0.1"));
    }

    get name(): string {
        return this.options.name;
    }
    get port(): number {
        return this.options.port;
    }
    get httpRedirectPort(): number | undefined {
        return this.options.httpRedirectPort;
    }
    get pidFile(): string {
        return join(this.options.root, "run", "nginx.pid");
    }
    get metricsUrl(): string {
        return `http://127.0.0.1:${this.exporterPort}/metrics`;
    }
    get errorLog(): string {
        return join(this.options.root, "logs", "error.log");
    }
    /** The PIDs of what runs beside NGINX, with what their command line shows, for local:down. */
    get helpers(): { readonly name: string; readonly pid: number; readonly command: string }[] {
        return [
            ...(this.exporter?.pid
                ? [{ name: `${this.name} metrics exporter`, pid: this.exporter.pid, command: "prometheus-nginx-exporter" }]
                : []),
            ...(this.agent?.pid
                ? [{ name: `${this.name} backend health agent`, pid: this.agent.pid, command: "backend-health-agent.sh" }]
                : []),
        ];
    }
    get exporterPid(): number {
        return this.exporter?.pid ?? 0;
    }

    /** Where and how this proxy's NGINX runs, for the renderer. */
    hostProfile(workerProcesses: number): EdgeHostProfile {
        const { root, bindAddress, port, proxyProtocolFrom, httpRedirectPort, ipv6Address } = this.options;
        return {
            listen: { port, address: bindAddress, ipv6: false, ...(ipv6Address ? { ipv6Address } : {}), proxyProtocolFrom },
            httpRedirectPort,
            statusListen: { address: "127.0.0.1", port: this.statusPort },
            workers: { processes: workerProcesses, ...localWorkerLimits() },
            paths: {
                pidFile: this.pidFile,
                errorLog: this.errorLog,
                accessLog: join(root, "logs", "access.log"),
                tempDir: join(root, "run", "tmp"),
            },
        };
    }

    /** Runs the deploy script with `bundle` on standard input; rejects with its stderr. */
    deployBundle(bundle: string): Promise<string> {
        return runScript(deployScript, [], bundle, this.scriptEnvironment());
    }

    /** What the deploy script and the health agent are told of this proxy. */
    private scriptEnvironment(): Record<string, string> {
        return { WSS_EDGE_ROOT: this.options.root, NGINX_BIN: this.options.nginxBinary, WSS_EDGE_PLATFORM: this.options.platform };
    }

    masterPid(): number | undefined {
        if (!existsSync(this.pidFile)) return undefined;
        const pid = Number(readFileSync(this.pidFile, "utf8").trim());
        return pid > 0 && isAlive(pid) ? pid : undefined;
    }

    /**
     * After the first deploy: Debian's prometheus-nginx-exporter on loopback, and the backend
     * health agent the deploy installed (when the release carries it), as systemd runs both on
     * the VM.
     */
    async startHelpers(): Promise<void> {
        const log = openSync(join(this.options.root, "logs", "exporter.log"), "a");
        this.exporter = spawn(
            this.options.exporterBinary,
            [`-nginx.scrape-uri=http://127.0.0.1:${this.statusPort}/stub_status`, `-web.listen-address=127.0.0.1:${this.exporterPort}`],
            { stdio: ["ignore", log, log], detached: true },
        );
        closeSync(log);
        await waitUntil(
            10000,
            async () => /^nginx_up 1$/m.test((await httpGetText(this.metricsUrl)) ?? ""),
            `local stack: the metrics exporter of ${this.name} did not report NGINX up`,
        );
        await this.startAgent();
    }

    /** Starts the health agent if the live release carries it and it is not running. */
    async startAgent(): Promise<void> {
        const agentScript = join(this.options.root, "bin", "backend-health-agent.sh");
        if (!existsSync(agentScript) || (this.agent && this.agent.exitCode === null)) return;
        const log = openSync(join(this.options.root, "logs", "backend-health.log"), "a");
        this.agent = spawn("bash", [agentScript], {
            env: { ...process.env, ...this.scriptEnvironment() },
            stdio: ["ignore", log, log],
            detached: true,
        });
        closeSync(log);
    }

    /** Stops the agent if the live release no longer carries it (activeHealthChecks turned off). */
    async stopAgentIfRemoved(): Promise<void> {
        if (this.agent && !existsSync(join(this.options.root, "bin", "backend-health-agent.sh"))) {
            await terminate(this.agent, "SIGTERM");
            this.agent = undefined;
        }
    }

    /** The health agent's log: one line per transition. */
    agentLog(): string {
        try {
            return readFileSync(join(this.options.root, "logs", "backend-health.log"), "utf8");
        } catch {
            return "";
        }
    }

    async stop(): Promise<void> {
        // The agent first, so that it does not redeploy to an NGINX that is going away.
        if (this.agent) await terminate(this.agent, "SIGTERM");
        const master = this.masterPid();
        if (master !== undefined) await stopNginx(master);
        if (this.exporter) await terminate(this.exporter, "SIGTERM");
    }
}

/** Descriptors per worker and connections that fit in them, under this machine's hard limit. */
function localWorkerLimits(): { connections: number; fileLimit: number } {
    const fileLimit = Math.min(hardFileLimit(), 1048576);
    return { fileLimit, connections: Math.max(512, fileLimit - 200) };
}
