import { readFileSync } from "node:fs";
import { join } from "node:path";
import { renderCloudConfig, type SshHostKey } from "./cloudConfig";
import { waitForFirstBoot } from "./proxyHost";
import { inlineScript } from "./remoteScript";

/** Facts about a backend host (Amazon Linux 2023), in one place. */
export const backendHost = {
    /** Amazon Linux's login user, with passwordless sudo. */
    user: "ec2-user",
    /** TLS files and the current backend.env; the container mounts `<root>/tls`. */
    root: "/etc/wss-backend",
    /** Where CopyToRemote puts the backend deploy script. */
    deployScriptPath: "/home/ec2-user/wss-edge/deploy-backend.sh",
    /** The app's Prometheus metrics; the security group admits the proxy's only. */
    metricsPort: 9464,
} as const;

/** Repository-relative paths of the scripts the backends' deploy runs (Pulumi's working directory is the project root). */
export const backendDeployScript = "deploy/deploy-backend.sh";
const healthGateScript = "deploy/backend-health-gate.sh";

/** How long a backend may take, after its deploy, to answer its health check from the proxy. */
export const healthGateTimeoutSeconds = 180;

/**
 * A backend's user data: Docker, and the host key the deploy pins. It holds no image, setting
 * or certificate — those come with each deploy — so it never changes on day two; if it does,
 * the host is replaced (cloud-init would not run it again).
 */
export function backendUserData(hostKey: SshHostKey): string {
    return renderCloudConfig({
        purpose: "wss-edge backend: Docker; the app and its certificates come with each deploy",
        hostKey,
        packages: ["docker"],
        runcmd: [["systemctl", "enable", "--now", "docker"]],
    });
}

export const backendDeployCommand = `${waitForFirstBoot}\nsudo bash ${backendHost.deployScriptPath}`;

/** The gate's command line, run on the proxy with the CA and client credentials on stdin. */
export function backendHealthGateCommand(name: string, address: string, port: number, serverName: string): string {
    const script = readFileSync(join(__dirname, "..", healthGateScript), "utf8");
    // The proxy's first boot installs curl; a new proxy may still be at it.
    return `${waitForFirstBoot}\n${inlineScript(script, "backend-health-gate", [name, address, port, serverName, healthGateTimeoutSeconds])}`;
}
