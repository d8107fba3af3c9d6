import { renderCloudConfig } from "./cloudConfig";
import { applyReleaseCommand, type ReleaseStore, releaseFolders } from "./releaseChannel";

/** Facts about a backend host (Amazon Linux 2023, which ships Systems Manager's agent and the AWS CLI), in one place. */
export const backendHost = {
    /** TLS files and the current backend.env; the container mounts `<root>/tls`. */
    root: "/etc/wss-backend",
    /** The app's Prometheus metrics; the security group admits the proxy's only. */
    metricsPort: 9464,
} as const;

/** Repository-relative path of the script a backend release carries and runs (Pulumi's working directory is the project root). */
export const backendDeployScript = "deploy/deploy-backend.sh";

/** How long a backend may take, after its deploy, to answer its health check from the proxy. */
export const healthGateTimeoutSeconds = 180;

/**
 * A backend's user data: Docker, then the store's current release of this backend (its app and
 * certificates), so a replaced or recovered backend serves on its own. It names no image,
 * setting or certificate — those come with each release — so it never changes on day two; if
 * it does, the host is replaced (cloud-init would not run it again).
 */
export function backendUserData(store: ReleaseStore, name: string): string {
    return renderCloudConfig({
        purpose: "wss-edge backend: Docker, then the release store's current release of this backend",
        packages: ["docker"],
        runcmd: [
            ["systemctl", "enable", "--now", "docker"],
            ["sh", "-c", applyReleaseCommand(store, "backend", releaseFolders.backend(name), "current")],
        ],
    });
}
