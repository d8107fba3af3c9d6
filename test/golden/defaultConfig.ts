/**
 * The config the default stack deploys, kept as test/golden/default.nginx.conf so that a pull
 * request that changes what NGINX runs shows that change as a diff a reviewer reads. After an
 * intended change: `npm run golden:update`, and commit the file.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { edgeConfigSpec } from "../../nginx/edgeConfigFromSettings";
import { renderNginxConfig } from "../../nginx/renderNginxConfig";
import { vmProxyHost } from "../../plan/capacity";
import { validateSettings } from "../../settings/edgeSettings";

export const goldenPath = join(__dirname, "default.nginx.conf");

/** Default settings, a domain name, three backends, on the default proxy instance type (c6i.large). */
export function defaultConfig(): string {
    const settings = validateSettings({ domainName: "ws.example.com", httpRedirect: "true" });
    const backends = ["10.0.1.21", "10.0.2.22", "10.0.3.23"].map((address) => ({ address, port: settings.backendPort }));
    return renderNginxConfig(
        edgeConfigSpec(settings, backends, vmProxyHost({ memoryMiB: 4096, vcpus: 2, backendCount: 3 }), ["ws.example.com"]),
    );
}

if (require.main === module) {
    writeFileSync(goldenPath, defaultConfig());
    console.log(`wrote ${goldenPath}`);
}
