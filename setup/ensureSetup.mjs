// Runs before `npm start` and `npm test` (npm's pre-scripts): installs what is missing, or
// stops at once with the exact command to run. Plain Node, no dependencies, so it works on
// a fresh clone before `npm install`.
//
//   node setup/ensureSetup.mjs start|test|bench|heap|lint
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const purpose = ["test", "bench", "heap", "instructions", "lint"].find((p) => process.argv.includes(p)) ?? "start";

// System packages: the binary each provides and the Debian package that has it. Lint and
// format checks need none.
const systemPackages =
    purpose === "lint"
        ? []
        : [
              { binary: "nginx", pkg: "nginx-light", why: "the edge itself" },
              { binary: "openssl", pkg: "openssl", why: "issues the local PKI" },
              { binary: "flock", pkg: "util-linux", why: "the deploy script's lock" },
              { binary: "curl", pkg: "curl", why: "the backends' health gate" },
              { binary: "prometheus-nginx-exporter", pkg: "prometheus-nginx-exporter", why: "NGINX's metrics" },
              ...(purpose === "test"
                  ? [
                        { binary: "sslscan", pkg: "sslscan", why: "the TLS audit test" },
                        { binary: "debootstrap", pkg: "debootstrap", why: "the VM twin's Debian 12 tree" },
                        { binary: "systemd-nspawn", pkg: "systemd-container", why: "booting the VM twin" },
                        { binary: "dpkg-scanpackages", pkg: "dpkg-dev", why: "the VM twin's package mirror" },
                        { binary: "chromium", pkg: "chromium", why: "the browser tests" },
                        // By its path: a pip or pyenv `aws` earlier on PATH is not the client the VM runs.
                        { binary: "/usr/bin/aws", pkg: "awscli", why: "the VM twin's release store and Systems Manager stand-ins" },
                        { binary: "haproxy", pkg: "haproxy", why: "the load-balanced twin's front" },
                        { binary: "pebble", pkg: "pebble", why: "the ACME tests' certificate authority" },
                        { binary: "certutil", pkg: "libnss3-tools", why: "the browser test's trust in the ACME CA's root" },
                    ]
                  : []),
              ...(purpose === "bench" || purpose === "instructions"
                  ? [
                        { binary: "haproxy", pkg: "haproxy", why: "the HAProxy comparison" },
                        { binary: "caddy", pkg: "caddy", why: "the Caddy comparison" },
                    ]
                  : []),
              ...(purpose === "heap" ? [{ binary: "valgrind", pkg: "valgrind", why: "the NGINX heap profile" }] : []),
              ...(purpose === "instructions" || purpose === "test"
                  ? [{ binary: "valgrind", pkg: "valgrind", why: "instruction counts (callgrind)" }]
                  : []),
          ];

// Debian puts nginx and other daemons in /usr/sbin, which a non-root user's PATH often lacks;
// the local stack looks there too.
function has(binary) {
    const path = `${process.env.PATH ?? ""}:/usr/local/sbin:/usr/sbin:/sbin`;
    return spawnSync("sh", ["-c", 'command -v "$1"', "sh", binary], { stdio: "ignore", env: { ...process.env, PATH: path } }).status === 0;
}

function step(message) {
    console.error(`setup: ${message}`);
}

if (!existsSync(join(root, "node_modules", ".package-lock.json"))) {
    step("installing npm dependencies (npm ci)…");
    execFileSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
}

const missing = systemPackages.filter((p) => !has(p.binary));
if (missing.length > 0) {
    const pkgs = missing.map((p) => p.pkg);
    const command = `apt-get update && apt-get install -y ${pkgs.join(" ")}`;
    const isRoot = process.getuid?.() === 0;
    if (!isRoot || !has("apt-get")) {
        step(`missing ${missing.map((p) => `${p.binary} (${p.why})`).join(", ")}.`);
        step(`install with: ${isRoot ? command : `sudo sh -c '${command}'`}`);
        process.exit(1);
    }
    step(`installing ${pkgs.join(", ")} with apt-get…`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
    execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...pkgs], { stdio: "inherit", env });
}

// The VM twin's Debian tree is a read-only fixture every twin test boots from: built here, once per
// machine (a minute or two), so the tests' own time is the tests'. Only root can boot a twin.
if (purpose === "test" && process.getuid?.() === 0 && has("debootstrap") && has("systemd-nspawn")) {
    execFileSync(process.execPath, ["--import", "tsx", join(root, "twin", "cli.ts"), "image"], { cwd: root, stdio: "inherit" });
}
