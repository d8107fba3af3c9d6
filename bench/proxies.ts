import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LocalStack } from "../local/localStack";
import { nginxProgram } from "../local/platformNginx";
import { freePort, waitForPort } from "../local/ports";
import { childPids, isAlive, stopNginx, terminate } from "../local/processes";
import { backendTls12Ciphers } from "../nginx/tlsPolicy";
import { backendServerName } from "../pki/pkiSpec";
import type { TlsTarget } from "./loadClient";

/** One way of putting TLS WebSockets in front of the three backends. */
export interface ProxyUnderTest {
    readonly name: string;
    readonly description: string;
    readonly target: TlsTarget;
    /** PIDs whose memory and CPU count as the proxy's (none for direct). */
    processes(): number[];
    /** Starts a new process with the same config and soft-stops the old one, where the proxy has such a reload (HAProxy's -sf). */
    reload?(): Promise<void>;
    /** The most sockets it can hold on this machine, when something other than the proxy sets it. */
    readonly socketCeiling?: { readonly sockets: number; readonly why: string };
    stop(): Promise<void>;
}

export interface BenchContext {
    readonly stack: LocalStack;
    readonly dir: string;
    /** Descriptors one process may hold here. */
    readonly fileLimit: number;
    /**
     * A command the proxy runs under (callgrind), in the foreground as one process with one
     * thread of work; active health checks are then left out, as they cost by the second and not
     * by the session (this project's run in an agent beside NGINX, which is not counted either).
     */
    readonly underTool?: readonly string[];
}

/** A master process and its workers; none once the master is gone. */
export const pidsUnder = (master: number): number[] => (isAlive(master) ? [master, ...childPids(master)] : []);
const readPid = (file: string) => (existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : 0);

function backendPorts(stack: LocalStack): number[] {
    return stack.backendNames().map((name) => stack.backendAddress(name).port);
}

/** Clients straight to the backends, holding the proxy's client certificate: the physical limit. */
export function direct({ stack }: BenchContext): ProxyUnderTest {
    const pki = stack.certificates;
    return {
        name: "direct",
        description: "clients straight to the three backends (mutual TLS), no proxy",
        target: {
            urls: backendPorts(stack).map((port) => `wss://127.0.0.1:${port}/`),
            ca: pki.caCertificatePem,
            cert: pki.proxyClientCertificate.certificatePem,
            key: pki.proxyClientCertificate.privateKeyPem,
            servername: backendServerName,
        },
        processes: () => [],
        stop: async () => undefined,
    };
}

/** This project's rendered config, deployed by the local stack. */
export function wssEdge({ stack }: BenchContext): ProxyUnderTest {
    return {
        name: "wss-edge",
        description:
            "this project's NGINX config (ECDSA P-256, TLS 1.2/1.3, reuseport; mTLS to the backends over TLS 1.2, sessions resumed)",
        target: { urls: [`wss://127.0.0.1:${stack.edgeAddress.port}/`], ca: stack.certificates.caCertificatePem, servername: "localhost" },
        processes: () => pidsUnder(stack.nginxMasterPid() ?? 0),
        stop: async () => undefined,
    };
}

/**
 * This project's edge, as the local stack deployed it, run again under `underTool`: the stack's
 * NGINX stops and the same config starts as one process (master_process off), so every
 * instruction of a session is in one place.
 */
export async function wssEdgeUnderTool(context: BenchContext & { readonly underTool: readonly string[] }): Promise<ProxyUnderTest> {
    const { stack, underTool } = context;
    const master = stack.nginxMasterPid();
    if (master) await stopNginx(master);
    const config = join(dirname(dirname(stack.nginxPidFile)), "current", "nginx.conf");
    const nginx = nginxProgram(stack.proxyPlatform);
    const child = spawnUnder(underTool, nginx.path, [...nginx.args, "-c", config, "-g", foregroundNginx], withoutNginxVar());
    await waitForPort("127.0.0.1", stack.edgeAddress.port, underToolStartMs);
    return { ...wssEdge(context), processes: () => (child.pid ? [child.pid] : []), stop: () => terminate(child, "SIGQUIT") };
}

const foregroundNginx = "daemon off; master_process off;";
/** Under callgrind a proxy starts tens of times slower (Caddy's Go runtime the slowest), more on a busy machine. */
const underToolStartMs = 300000;

function spawnUnder(tool: readonly string[], command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    return spawn(tool[0], [...tool.slice(1), command, ...args], { stdio: ["ignore", "ignore", "ignore"], env });
}

/**
 * The tutorial's nginx.conf as written (../shared/reference/nginx-wss-tutorial.txt), with only
 * its missing semicolon fixed and its names pointed at this machine: its own RSA-4096
 * self-signed certificate, TLSv1-1.2, a hard-coded Connection "upgrade", default timeouts and
 * limits. It is an http{} fragment, so it is wrapped in the smallest main context NGINX runs
 * without root (events{}, pid, logs, temp paths); nothing else is added.
 */
export async function tutorial({ stack, dir, underTool }: BenchContext): Promise<ProxyUnderTest> {
    const root = join(dir, "tutorial");
    mkdirSync(join(root, "tmp"), { recursive: true });
    execFileSync(
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:4096",
            "-keyout",
            join(root, "key.pem"),
            "-out",
            join(root, "cert.pem"),
            "-days",
            "365",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        { stdio: "ignore" },
    );
    writeFileSync(join(root, "client.pem"), stack.certificates.proxyClientCertificate.certificatePem);
    writeFileSync(join(root, "client.key"), stack.certificates.proxyClientCertificate.privateKeyPem, { mode: 0o600 });
    const port = await freePort("127.0.0.1");
    const [p1, p2, p3] = backendPorts(stack);
    const config = `pid ${root}/nginx.pid;
error_log ${root}/error.log;
events {}
http { client_body_temp_path ${root}/tmp/body; proxy_temp_path ${root}/tmp/proxy; fastcgi_temp_path ${root}/tmp/fastcgi; uwsgi_temp_path ${root}/tmp/uwsgi; scgi_temp_path ${root}/tmp/scgi; access_log ${root}/access.log;
server { listen 127.0.0.1:${port} ssl; server_name ws.serverlab.ca; ssl_certificate cert.pem; ssl_certificate_key key.pem; ssl_protocols TLSv1 TLSv1.1 TLSv1.2; ssl_ciphers HIGH:!aNULL:!MD5; location / { proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header Host $host; proxy_pass https://ws-backend; proxy_ssl_certificate client.pem; proxy_ssl_certificate_key client.key; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; } } upstream ws-backend { # enable sticky session based on IP
ip_hash; server 127.0.0.1:${p1}; server 127.0.0.1:${p2}; server 127.0.0.1:${p3}; } }
`;
    writeFileSync(join(root, "nginx.conf"), config);
    const pidFile = join(root, "nginx.pid");
    const target = { urls: [`wss://127.0.0.1:${port}/`], ca: readFileSync(join(root, "cert.pem"), "utf8"), servername: "localhost" };
    if (underTool) {
        const child = spawnUnder(underTool, "nginx", ["-c", join(root, "nginx.conf"), "-g", foregroundNginx], withoutNginxVar());
        await waitForPort("127.0.0.1", port, underToolStartMs);
        return {
            name: "tutorial",
            description: "the tutorial's config as written",
            target,
            processes: () => [child.pid ?? 0],
            stop: () => terminate(child, "SIGQUIT"),
        };
    }
    execFileSync("nginx", ["-c", join(root, "nginx.conf")], { stdio: ["ignore", "ignore", "inherit"], env: withoutNginxVar() });
    return {
        name: "tutorial",
        description:
            'the tutorial\'s config as written (RSA-4096, TLSv1-1.2, Connection "upgrade", NGINX defaults: 1 worker, 512 connections)',
        target,
        processes: () => pidsUnder(readPid(pidFile)),
        socketCeiling: { sockets: 256, why: "NGINX's default worker_connections 512 and 1 worker, which the tutorial keeps" },
        stop: async () => {
            const pid = readPid(pidFile);
            if (pid) await stopNginx(pid);
        },
    };
}

/**
 * HAProxy 2.6 from Debian doing the same job: source-hash balancing, a tunnel timeout, TLS to
 * the backends with verification and the client certificate, over TLS 1.2 with this project's
 * suites and sessions resumed (HAProxy's default), as the edge's backend leg is by default. HAProxy is one process; to hold
 * more sockets than one process's descriptor limit allows, several share the port (SO_REUSEPORT).
 */
export async function haproxy(
    { stack, dir, fileLimit, underTool }: BenchContext,
    instances: number,
    options: { readonly closeSpreadSeconds?: number } = {},
): Promise<ProxyUnderTest> {
    const root = join(dir, "haproxy");
    mkdirSync(root, { recursive: true });
    const pki = stack.certificates;
    writeFileSync(join(root, "edge.pem"), pki.edgeCertificateChainPem + pki.edgePrivateKeyPem, { mode: 0o600 });
    writeFileSync(join(root, "client.pem"), pki.proxyClientCertificate.certificatePem + pki.proxyClientCertificate.privateKeyPem, {
        mode: 0o600,
    });
    writeFileSync(join(root, "ca.crt"), pki.caCertificatePem);
    const port = await freePort("127.0.0.1");
    const perProcess = Math.floor((fileLimit - 200) / 2);
    // A soft stop (reload) closes the old process's connections over the window; it quits 5 s after it.
    const spread =
        options.closeSpreadSeconds === undefined
            ? ""
            : `    close-spread-time ${options.closeSpreadSeconds}s\n    hard-stop-after ${options.closeSpreadSeconds + 5}s\n`;
    const servers = backendPorts(stack)
        .map(
            (p, i) =>
                `    server b${i + 1} 127.0.0.1:${p} ssl verify required ca-file ${root}/ca.crt crt ${root}/client.pem sni str(${backendServerName}) verifyhost ${backendServerName} ssl-max-ver TLSv1.2 ciphers ${backendTls12Ciphers.join(":")}`,
        )
        .join("\n");
    writeFileSync(
        join(root, "haproxy.cfg"),
        `global
    maxconn ${perProcess}
    nbthread ${underTool ? 1 : 2}
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305
${spread}defaults
    mode http
    maxconn ${perProcess}
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout tunnel 300s
    timeout http-request 10s
frontend edge
    bind 127.0.0.1:${port} ssl crt ${root}/edge.pem alpn http/1.1
    default_backend wss
backend wss
    # Sticky by client address, consistently hashed, with active checks and redispatch: the
    # closest HAProxy gets to this project's edge.
    balance source
    hash-type consistent
    option redispatch
    retries 2
${underTool ? "" : "    default-server check inter 2s fall 2 rise 2\n"}${servers}
`,
    );
    const start = (...args: string[]) =>
        underTool
            ? spawnUnder(underTool, "haproxy", ["-db", "-f", join(root, "haproxy.cfg"), ...args])
            : spawn("haproxy", ["-db", "-f", join(root, "haproxy.cfg"), ...args], { stdio: ["ignore", "ignore", "inherit"] });
    const children: ChildProcess[] = Array.from({ length: instances }, () => start());
    await waitForPort("127.0.0.1", port, underTool ? underToolStartMs : 10000);
    return {
        name: "haproxy",
        description: `HAProxy 2.6 (balance source, consistent hashing, ${underTool ? "no active checks while counted" : "active checks"}, timeout tunnel, ssl verify required + client certificate, TLS 1.2 to the backends with sessions resumed), ${instances} process(es) sharing the port`,
        target: { urls: [`wss://127.0.0.1:${port}/`], ca: pki.caCertificatePem, servername: "localhost" },
        processes: () => children.map((c) => c.pid!).filter(Boolean),
        socketCeiling: {
            sockets: perProcess * instances,
            why: `${instances} process(es) × ${perProcess} (the ${fileLimit}-descriptor limit per process)`,
        },
        reload: async () => {
            // As `systemctl reload haproxy` without the master: the new process binds beside the
            // old ones (SO_REUSEPORT), then tells them to soft-stop (SIGUSR1).
            const old = children.splice(0);
            children.push(start("-sf", ...old.map((c) => String(c.pid))));
            // hard-stop-after ends them; a config without it is cut after a minute.
            await Promise.all(old.map((c) => terminate(c, "SIGCONT", 60000)));
        },
        stop: async () => {
            await Promise.all(children.map((c) => terminate(c, "SIGTERM")));
        },
    };
}

/** Caddy 2.6 from Debian: ip_hash load balancing, TLS to the backends with the client certificate. */
export async function caddy({ stack, dir, fileLimit, underTool }: BenchContext): Promise<ProxyUnderTest> {
    const root = join(dir, "caddy");
    mkdirSync(root, { recursive: true });
    const pki = stack.certificates;
    writeFileSync(join(root, "edge.crt"), pki.edgeCertificateChainPem);
    writeFileSync(join(root, "edge.key"), pki.edgePrivateKeyPem, { mode: 0o600 });
    writeFileSync(join(root, "client.crt"), pki.proxyClientCertificate.certificatePem);
    writeFileSync(join(root, "client.key"), pki.proxyClientCertificate.privateKeyPem, { mode: 0o600 });
    writeFileSync(join(root, "ca.crt"), pki.caCertificatePem);
    const port = await freePort("127.0.0.1");
    const upstreams = backendPorts(stack)
        .map((p) => `127.0.0.1:${p}`)
        .join(" ");
    writeFileSync(
        join(root, "Caddyfile"),
        `{
	admin off
	auto_https off
	storage file_system ${root}/data
}
https://localhost:${port} {
	bind 127.0.0.1
	tls ${root}/edge.crt ${root}/edge.key {
		protocols tls1.2 tls1.3
	}
	reverse_proxy ${upstreams} {
		lb_policy ip_hash
		transport http {
			tls
			tls_trusted_ca_certs ${root}/ca.crt
			tls_client_auth ${root}/client.crt ${root}/client.key
			tls_server_name ${backendServerName}
		}
	}
}
`,
    );
    const env = { ...process.env, HOME: root, XDG_DATA_HOME: join(root, "data"), XDG_CONFIG_HOME: join(root, "config") };
    const args = ["run", "--config", join(root, "Caddyfile"), "--adapter", "caddyfile"];
    // Under the tool, threads run one at a time: more than one Go processor would only spin. Go's
    // preemption signals, arriving while callgrind handles another, trip its assertion
    // (threads.c, vgCallgrind_post_signal) and kill the run.
    const child = underTool
        ? spawnUnder(underTool, "caddy", args, { ...env, GOMAXPROCS: "1", GODEBUG: "asyncpreemptoff=1" })
        : spawn("caddy", args, { stdio: ["ignore", "ignore", "ignore"], env });
    await waitForPort("127.0.0.1", port, underTool ? underToolStartMs : 10000);
    const perProcess = Math.floor((fileLimit - 200) / 2);
    return {
        name: "caddy",
        description: "Caddy 2.6 (lb_policy ip_hash, TLS to the backends with the client certificate)",
        target: { urls: [`wss://127.0.0.1:${port}/`], ca: pki.caCertificatePem, servername: "localhost" },
        processes: () => (child.pid ? [child.pid] : []),
        socketCeiling: { sockets: perProcess, why: `one process, ${fileLimit} descriptors, two per proxied socket` },
        stop: () => terminate(child, "SIGTERM"),
    };
}

function withoutNginxVar(): NodeJS.ProcessEnv {
    const env = { ...process.env };
    delete env.NGINX;
    return env;
}

/** Memory of `pids` as proportional set size (shared pages split fairly between processes), KiB. */
export function proportionalSetKiB(pids: readonly number[]): number {
    let total = 0;
    for (const pid of pids) {
        try {
            const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
            total += match ? Number(match[1]) : 0;
        } catch {
            // the process ended
        }
    }
    return total;
}

/** User plus system CPU time of `pids`, in milliseconds. */
export function cpuTimeMs(pids: readonly number[]): number {
    const tick = 1000 / 100; // USER_HZ
    let total = 0;
    for (const pid of pids) {
        try {
            const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
            total += (Number(fields[11]) + Number(fields[12])) * tick;
        } catch {
            // the process ended
        }
    }
    return total;
}
