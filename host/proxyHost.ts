import type { ProxyPlatform } from "../settings/settingsTable";
import { renderCloudConfig } from "./cloudConfig";
import { applyReleaseCommand, type ReleaseStore, releaseFolders } from "./releaseChannel";

/**
 * Facts about the proxy VM (Debian 12's cloud image), in one place: the user data, the release
 * documents and the renderer's host profile read them from here.
 */
export const proxyHost = {
    /** Where the deploy script keeps releases; NGINX runs `-c <releaseRoot>/current/nginx.conf`. */
    releaseRoot: "/etc/wss-edge",
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

/** What the edge's deploy script is told on the VM: where releases live, and NGINX's systemd unit. */
export const edgeDeployEnvironment = { WSS_EDGE_ROOT: proxyHost.releaseRoot, WSS_EDGE_SYSTEMD_UNIT: proxyHost.systemdUnit } as const;

/**
 * First boot, run once by cloud-init: NGINX from Debian, run by systemd from the deploy's
 * `current` release, with the descriptor and network limits tens of thousands of sockets need,
 * and the AWS CLI the release channel fetches with. NGINX stays stopped until a release is
 * applied (first boot's next step, or the first deploy); until then nothing listens.
 */
export const proxyFirstBootScript = `#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q nginx-light curl prometheus-nginx-exporter awscli
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
 * Systems Manager's agent, which Debian's cloud images do not carry: AWS's own package for the
 * region and the VM's architecture (the installation AWS documents for Debian Server), installed
 * before anything else so that Session Manager reaches the VM even if a later step fails.
 */
export function ssmAgentInstallScript(region: string): string {
    return `#!/bin/bash
set -euo pipefail
arch=$(dpkg --print-architecture)
curl -fsSL --retry 10 --retry-connrefused -o /tmp/amazon-ssm-agent.deb \\
    "https://s3.${region}.amazonaws.com/amazon-ssm-${region}/latest/debian_\${arch}/amazon-ssm-agent.deb"
dpkg -i /tmp/amazon-ssm-agent.deb
rm -f /tmp/amazon-ssm-agent.deb
systemctl enable --now amazon-ssm-agent
`;
}

export interface ProxyUserDataOptions {
    /** Where first boot fetches the current edge release from. */
    readonly store: ReleaseStore;
    /** Install Systems Manager's agent for this region (on AWS; the twin's stand-in runs the documents itself). */
    readonly ssmAgentRegion?: string;
    /** The Debian release the VM must run (proxyPlatform); Debian 12 by default. */
    readonly platform?: ProxyPlatform;
}

/**
 * First boot on another release than Debian 12 checks that the image is that release before it
 * installs anything. It is there only then, so the default's user data, and its VMs, stay as
 * they were; a change of platform changes the user data, which replaces the VM.
 */
function platformCheckScript(platform: ProxyPlatform): string {
    return `#!/bin/sh
. /etc/os-release
[ "debian-$VERSION_ID" = "${platform}" ] || { echo "wss-edge: this VM runs debian-$VERSION_ID; the stack's proxyPlatform is ${platform}" >&2; exit 1; }
`;
}

/**
 * The proxy's user data. cloud-init runs it once per instance: a change to it replaces the VM,
 * and the new VM applies the store's current release at the end of its first boot.
 */
export function proxyUserData(options: ProxyUserDataOptions): string {
    const agent = options.ssmAgentRegion;
    const platform = options.platform ?? "debian-12";
    return renderCloudConfig({
        purpose: "wss-edge proxy: NGINX from Debian, serving the release store's current edge release",
        files: [
            ...(platform !== "debian-12"
                ? [{ path: "/usr/local/sbin/wss-edge-check-platform", permissions: "0755", content: platformCheckScript(platform) }]
                : []),
            ...(agent
                ? [{ path: "/usr/local/sbin/wss-edge-install-ssm-agent", permissions: "0755", content: ssmAgentInstallScript(agent) }]
                : []),
            { path: "/usr/local/sbin/wss-edge-first-boot", permissions: "0755", content: proxyFirstBootScript },
        ],
        runcmd: [
            ...(platform !== "debian-12" ? [["/usr/local/sbin/wss-edge-check-platform"]] : []),
            ...(agent ? [["/usr/local/sbin/wss-edge-install-ssm-agent"]] : []),
            ["/usr/local/sbin/wss-edge-first-boot"],
            ["sh", "-c", applyReleaseCommand(options.store, "edge", releaseFolders.edge, "current", edgeDeployEnvironment)],
        ],
    });
}
