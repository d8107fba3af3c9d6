/**
 * What a test needs of this machine (root, a tool, a working browser), and what happens when it
 * is missing: on a developer's machine the test is skipped and the summary says why; in CI
 * (`CI=true`) a missing requirement is a failure that names it, so a green CI run never hides
 * tests that did not run.
 */
import { execFileSync } from "node:child_process";
import { it } from "node:test";
import { findBinary } from "../../local/processes";

export const inCi = process.env.CI === "true";

/**
 * Test options for a requirement: `unmet` is why it cannot run here, or false. Outside CI the
 * test is skipped with that reason; in CI it is skipped too, and a failing test named after the
 * requirement is added beside it.
 */
export function requiring(unmet: string | false): { skip?: string } {
    if (unmet === false) return {};
    if (inCi) {
        it(`has what it needs in CI: ${unmet}`, () => {
            throw new Error(`CI=true: ${unmet}. CI must run every test (bash .ci/run installs what the tests need).`);
        });
    }
    return { skip: unmet };
}

export const isRoot = process.getuid?.() === 0;

/** Why a test needing root cannot run, or false. */
export const unlessRoot = (why: string): string | false => (isRoot ? false : `needs root: ${why}`);

/** Why a test needing these binaries cannot run (naming each missing one and its Debian package), or false. */
export function unlessInstalled(binaries: Record<string, string>): string | false {
    const missing = Object.entries(binaries).filter(([binary]) => !findBinary(binary));
    if (missing.length === 0) return false;
    return `needs ${missing.map(([binary, pkg]) => `${binary} (Debian's ${pkg})`).join(", ")}; .ci/run installs them`;
}

/**
 * Why this machine cannot host a VM twin, or false: root, the tools, and the kernel features the
 * twin uses (a network namespace and an overlay mount), which a container without capabilities lacks.
 */
export function unlessTwinCanRun(): string | false {
    const unmet =
        unlessRoot("network namespaces, an overlay mount, systemd-nspawn") ||
        unlessInstalled({
            "systemd-nspawn": "systemd-container",
            debootstrap: "debootstrap",
            nsenter: "util-linux",
            ip: "iproute2",
            // By its path: the stand-ins are driven with the client the VM runs, not a pip or pyenv `aws`.
            "/usr/bin/aws": "awscli",
        });
    if (unmet) return unmet;
    try {
        // A namespace of each kind the twin makes, for one `true`: what a container without capabilities refuses.
        execFileSync("unshare", ["--net", "--mount", "true"], { stdio: "pipe" });
    } catch (error) {
        return `this machine refuses network and mount namespaces (${String((error as { stderr?: Buffer }).stderr ?? error).trim()}): run on a VM with root, or a privileged container`;
    }
    return false;
}
