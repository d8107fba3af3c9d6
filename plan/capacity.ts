/**
 * How many WebSockets a proxy holds, from what its machine offers and the settings: the capacity
 * model, measured by the benchmark (bench/results/), and the proxy VM's NGINX host profile that
 * follows from it.
 */
import { proxyHost, systemFileLimit } from "../host/proxyHost";
import type { EdgeHostProfile } from "../nginx/edgeConfigFromSettings";
import type { EdgeSettings } from "../settings/edgeSettings";
import { type ProxyPlatform, settingsTable } from "../settings/settingsTable";

/** What the proxy VM offers, from EC2's description of its instance type, and how many backends it fronts. */
export interface ProxyCapacity {
    readonly memoryMiB: number;
    readonly vcpus: number;
    readonly backendCount: number;
    /** The tunnelBufferKiB setting (default: the setting's default). */
    readonly tunnelBufferKiB?: number;
    /** The proxyPlatform setting (default: the setting's default). */
    readonly platform?: ProxyPlatform;
}

/**
 * NGINX's memory per held WebSocket with TLS on both legs at the default tunnel buffers: the
 * largest figure of the full benchmark (PSS over all NGINX processes; its scale step from 5,000 to
 * 100,000 sockets and the tunnel-buffer sweep, bench/results/latest.md), rounded up. A test holds
 * it to the committed results.
 */
export const proxyMemoryPerSocketKiB = 68;
/**
 * The same on Debian 13 (NGINX 1.26, OpenSSL 3.5): 81.5 to 82.1 KiB per socket with X25519 and
 * 88 KiB with X25519MLKEM768 negotiated, measured with this project's config (docs/benchmark.md,
 * the platform section), rounded up. OpenSSL 3.5 keeps more per connection; NGINX and glibc do not.
 */
export const proxyMemoryPerSocketKiBDebian13 = 90;

/**
 * The cost per socket with `tunnelBufferKiB`: each socket keeps two tunnel buffers, one per
 * direction. 2 KiB per KiB of buffer is on the safe side of both measured changes from the default
 * (1 KiB: −9.9 KiB per socket; 16 KiB: +8.4; bench/results/tunnel-buffers.md).
 */
export function memoryPerSocketKiB(
    tunnelBufferKiB: number = settingsTable.tunnelBufferKiB.default,
    platform: ProxyPlatform = settingsTable.proxyPlatform.default as ProxyPlatform,
): number {
    const base = platform === "debian-13" ? proxyMemoryPerSocketKiBDebian13 : proxyMemoryPerSocketKiB;
    return base + 2 * (tunnelBufferKiB - settingsTable.tunnelBufferKiB.default);
}
/** Ephemeral ports the proxy VM's sysctl opens (1024–65000): one per socket to each backend. */
const portsPerBackend = 60000;

/**
 * The most WebSockets the proxy admits, so that it never runs out of memory: what is left of
 * its memory after 512 MiB for the OS and a quarter for the kernel's socket buffers and
 * traffic bursts, divided by the measured cost per socket; and never more than the ports
 * towards the backends or the system's descriptors allow. Beyond it, new upgrades get 503.
 */
export function proxySocketCeiling(capacity: ProxyCapacity): number {
    const usableMiB = capacity.memoryMiB - 512 - capacity.memoryMiB / 4;
    const byMemory = Math.floor((usableMiB * 1024) / memoryPerSocketKiB(capacity.tunnelBufferKiB, capacity.platform));
    return Math.max(1000, Math.min(byMemory, portsPerBackend * capacity.backendCount, Math.floor(systemFileLimit / 2) - 10000));
}

/**
 * A backend's memory per held WebSocket (RSS of the Node app over TLS, with its ping and echo
 * state): 41 to 47 KiB measured through the local stack with 1,000 more sockets on each of three
 * backends, rounded up.
 */
export const backendMemoryPerSocketKiB = 48;

/** The machine the local stack's and the VM twin's backends stand for: the default backendInstanceType, t3.small. */
export const defaultBackendMachine = { memoryMiB: 2048 } as const;

/**
 * The most WebSockets one backend holds: what is left of its memory after 512 MiB for the OS,
 * Docker and the app's own heap, and a quarter for socket buffers and clients being held back,
 * divided by the measured cost per socket; the backendMaxSockets setting when it is set.
 */
export function backendSocketCeiling(settings: Pick<EdgeSettings, "backendMaxSockets">, machine: { readonly memoryMiB: number }): number {
    if (settings.backendMaxSockets > 0) return settings.backendMaxSockets;
    const usableMiB = machine.memoryMiB - 512 - machine.memoryMiB / 4;
    return Math.max(100, Math.floor((usableMiB * 1024) / backendMemoryPerSocketKiB));
}

/**
 * Connections a Network Load Balancer carries to one target (IP and port) at once with client IP
 * preservation off, as the edge's target groups have it (the proxies read the client's address
 * from the PROXY protocol header): about 55,000, AWS's documented limit ("Client IP
 * preservation", docs.aws.amazon.com/elasticloadbalancing/latest/network/edit-target-group-attributes.html).
 * Past it, new connections to that proxy fail at the balancer, not with NGINX's clear 503. The
 * premise, preservation off on the target groups, is held by test/loadBalanced.test.ts.
 */
export const balancerConnectionsPerTarget = 55000;

/**
 * The proxy VM: NGINX from the distribution, run by systemd as root, one worker per vCPU. Any
 * one worker may hold every socket (the kernel's reuseport spreads them, but not exactly), so
 * each gets connection slots for all of them; the ceiling itself is enforced across workers.
 */
export function vmProxyHost(capacity: ProxyCapacity, behind: Pick<EdgeHostProfile["listen"], "proxyProtocolFrom"> = {}): EdgeHostProfile {
    const byMachine = proxySocketCeiling(capacity);
    // Behind the balancer, no proxy is told to hold more than the balancer carries to it.
    const maxSockets = behind.proxyProtocolFrom ? Math.min(byMachine, balancerConnectionsPerTarget) : byMachine;
    const connections = 2 * maxSockets + 1024;
    return {
        listen: { port: 443, ipv6: true, ...behind },
        httpRedirectPort: 80,
        statusListen: { address: "127.0.0.1", port: proxyHost.statusPort },
        workers: { user: "www-data", processes: Math.max(1, capacity.vcpus), connections, fileLimit: connections + 1024 },
        maxSockets,
        paths: { pidFile: "/run/nginx.pid", errorLog: "/var/log/nginx/error.log", accessLog: "/var/log/nginx/access.log" },
    };
}

/**
 * What the edge admits at once: the host's ceiling (its memory), lowered by the `maxSockets`
 * setting when that is smaller; a host without a ceiling (the local stack) takes the setting.
 */
export function socketCeiling(settings: Pick<EdgeSettings, "maxSockets">, host: Pick<EdgeHostProfile, "maxSockets">): number | undefined {
    const limits = [host.maxSockets, settings.maxSockets || undefined].filter((n): n is number => n !== undefined);
    return limits.length === 0 ? undefined : Math.min(...limits);
}
