import { renderCloudConfig, type SshHostKey } from "./cloudConfig";

/**
 * Facts about the proxy VM (Debian 12's cloud image), in one place: the user data, the deploy's
 * command line and the renderer's host profile read them from here.
 */
export const proxyHost = {
    /** Debian's cloud images log in as `admin`, with passwordless sudo. */
    user: "admin",
    /** Where the deploy script keeps releases; NGINX runs `-c <releaseRoot>/current/nginx.conf`. */
    releaseRoot: "/etc/wss-edge",
    /** Where CopyToRemote puts the deploy script. */
    deployScriptPath: "/home/admin/wss-edge/deploy-edge-config.sh",
    systemdUnit: "nginx",
    /** NGINX's stub_status, on loopback, read by the metrics exporter. */
    statusPort: 8081,
    /** Where Debian's prometheus-nginx-exporter serves NGINX's metrics. */
    exporterPort: 9113,
    /** Descriptors for NGINX's master and workers (systemd's LimitNOFILE and worker_rlimit_nofile). */
    fileLimit: 140000,
} as const;

/** Descriptors the VM must allow in all; the socket ceiling (nginx/edgeConfigFromSettings.ts) stays under half of it. */
export const systemFileLimit = 1000000;

/** The deploy script's path in this repository, relative to the project root (Pulumi's working directory). */
export const edgeDeployScript = "deploy/deploy-edge-config.sh";

/**
 * First boot, run once by cloud-init: NGINX from Debian, run by systemd from the deploy's
 * `current` release, with the descriptor and network limits tens of thousands of sockets need.
 * NGINX stays stopped until the first deploy; until then nothing listens.
 */
export const proxyFirstBootScript = `#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q nginx-light curl prometheus-nginx-exporter
systemctl disable --now nginx
# NGINX's metrics: stub_status on loopback (the deploy's config), exported on ${proxyHost.exporterPort} to the
# stack's own security groups only. It waits for the first deploy to start NGINX.
cat > /etc/default/prometheus-nginx-exporter <<'EXPORTER'
ARGS="-nginx.scrape-uri=http://127.0.0.1:${proxyHost.statusPort}/stub_status -web.listen-address=:${proxyHost.exporterPort} -nginx.retries=1000 -nginx.retry-interval=5s"
EXPORTER
systemctl restart prometheus-nginx-exporter
install -d -m 0700 ${proxyHost.releaseRoot}
install -d /etc/systemd/system/nginx.service.d
cat > /etc/systemd/system/nginx.service.d/wss-edge.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/sbin/nginx -t -q -c ${proxyHost.releaseRoot}/current/nginx.conf
ExecStart=
ExecStart=/usr/sbin/nginx -c ${proxyHost.releaseRoot}/current/nginx.conf
ExecReload=
ExecReload=/usr/sbin/nginx -c ${proxyHost.releaseRoot}/current/nginx.conf -s reload
LimitNOFILE=${proxyHost.fileLimit}
UNIT
cat > /etc/sysctl.d/90-wss-edge.conf <<'SYSCTL'
# Each WebSocket holds an ephemeral port towards its backend: widen the range.
net.ipv4.ip_local_port_range = 1024 65000
net.core.somaxconn = 4096
net.ipv4.tcp_max_syn_backlog = 8192
SYSCTL
# Ours only, failing loudly if one of them cannot be set (\`sysctl --system\` would fail the boot
# over any key of any package's file, and report ours no better).
sysctl -q -p /etc/sysctl.d/90-wss-edge.conf
# Raise the system's descriptor limit where it is lower (never lower the kernel's own default).
if [ "$(cat /proc/sys/fs/file-max)" -lt ${systemFileLimit} ]; then
    echo "fs.file-max = ${systemFileLimit}" > /etc/sysctl.d/91-wss-edge-files.conf
    sysctl -q -p /etc/sysctl.d/91-wss-edge-files.conf
fi
systemctl daemon-reload
systemctl enable ${proxyHost.systemdUnit}
`;

/**
 * The proxy's user data. cloud-init runs it once per instance: a change to it replaces the VM
 * (`userDataReplaceOnChange`), and the replacement is deployed to like any new VM.
 */
export function proxyUserData(hostKey: SshHostKey): string {
    return renderCloudConfig({
        purpose: "wss-edge proxy: NGINX from Debian, started by the first deploy",
        hostKey,
        files: [{ path: "/usr/local/sbin/wss-edge-first-boot", permissions: "0755", content: proxyFirstBootScript }],
        runcmd: [["/usr/local/sbin/wss-edge-first-boot"]],
    });
}

/**
 * Waits for first boot to finish, and fails with cloud-init's own account of it when it failed
 * (exit 1); exit 2 (newer cloud-init: finished, with recoverable errors) passes with its warnings.
 * Sent ahead of every remote deploy step, on the proxy and the backends alike.
 */
export const waitForFirstBoot = [
    "rc=0; cloud-init status --wait >/dev/null 2>&1 || rc=$?",
    'if [ "$rc" -eq 2 ]; then cloud-init status --long >&2 || true; fi',
    'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then',
    '  echo "wss-edge: first boot of $(hostname) failed (cloud-init status exit $rc):" >&2',
    "  cloud-init status --long >&2 || true",
    "  sudo tail -n 25 /var/log/cloud-init-output.log >&2 || true",
    "  exit 1",
    "fi",
].join("\n");

/** The deploy step's command line: first boot done, then the deploy script with the release on stdin. */
export const proxyDeployCommand = `${waitForFirstBoot}\nsudo WSS_EDGE_ROOT=${proxyHost.releaseRoot} WSS_EDGE_SYSTEMD_UNIT=${proxyHost.systemdUnit} bash ${proxyHost.deployScriptPath}`;

/**
 * What runs on a proxy VM as it leaves the load balancer (its target deregistered, so no new
 * connections): wait until NGINX holds no client sockets but the check's own, or `seconds` pass,
 * whichever is first. Sockets still open then are closed by the balancer (connection
 * termination at the end of the same deregistration delay) and their clients reconnect to
 * the other proxies.
 */
export function proxyDrainCommand(seconds: number): string {
    return [
        `deadline=$((SECONDS + ${seconds}))`,
        `while [ "$SECONDS" -lt "$deadline" ]; do`,
        `  active=$(curl -fsS --max-time 2 http://127.0.0.1:${proxyHost.statusPort}/stub_status 2>/dev/null | sed -n 's/^Active connections: *\\([0-9]*\\).*/\\1/p')`,
        // No answer (NGINX already gone) counts as drained.
        '  [ "0$active" -le 1 ] && break',
        "  sleep 5",
        "done",
        'echo "wss-edge: drained $(hostname), 0$active connections left"',
    ].join("\n");
}
