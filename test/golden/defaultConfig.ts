/**
 * The config the default stack deploys, kept as test/golden/default.nginx.conf so that a pull
 * request that changes what NGINX runs shows that change as a diff a reviewer reads. After an
 * intended change: `npm run golden:update`, and commit the file.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultBackendMachine } from "../../plan/capacity";
import { awsPlacement, planEdge } from "../../plan/edgePlan";
import { validateSettings } from "../../settings/edgeSettings";

export const goldenPath = join(__dirname, "default.nginx.conf");

/** Default settings, a domain name, three backends, on the default instance types (c6i.large, t3.small). */
export function defaultConfig(): string {
    const settings = validateSettings({ domainName: "ws.example.com", httpRedirect: "true" });
    const placement = awsPlacement({
        memoryMiB: 4096,
        vcpus: 2,
        backendMemoryMiB: defaultBackendMachine.memoryMiB,
        publicName: "ws.example.com",
        backendAddresses: ["10.0.1.21", "10.0.2.22", "10.0.3.23"],
        backendPort: settings.backendPort,
    });
    return planEdge(settings, placement).nginxConfig;
}

if (require.main === module) {
    writeFileSync(goldenPath, defaultConfig());
    console.log(`wrote ${goldenPath}`);
}
