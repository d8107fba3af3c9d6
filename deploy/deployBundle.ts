import { createHash } from "node:crypto";

/**
 * The files of one edge release (nginx.conf and its TLS files), as the deploy script reads
 * them on standard input: one line per file, `<relative path> <base64 content>`, sorted by
 * path so that equal releases are equal bytes. Keys travel this way, never as arguments
 * or in user data.
 */
export function encodeDeployBundle(files: Readonly<Record<string, string>>): string {
    return (
        Object.keys(files)
            .sort()
            .map((path) => {
                if (!isBundlePath(path)) throw new Error(`deploy bundle: ${JSON.stringify(path)} is not a safe relative path`);
                return `${path} ${Buffer.from(files[path], "utf8").toString("base64")}`;
            })
            .join("\n") + "\n"
    );
}

/** Same rule the deploy script enforces: relative, no `..`, plain characters. */
export function isBundlePath(path: string): boolean {
    return /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(path) && !path.split("/").some((part) => part === "..");
}

/** Content hash of a release: what makes the deploy run again when anything in it changes. */
export function releaseFingerprint(bundle: string): string {
    return createHash("sha256").update(bundle).digest("hex");
}
