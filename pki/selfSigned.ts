import { execFileSync } from "node:child_process";
import { join } from "node:path";

/**
 * A self-signed ECDSA P-256 certificate for `subjectAltName` (e.g. "DNS:backend.internal",
 * "IP:127.0.0.1"), valid `days` (one by default), as cert.pem and key.pem in `dir`.
 */
export function selfSignedCertificate(
    dir: string,
    commonName: string,
    subjectAltName: string,
    days = 1,
): { certificatePath: string; keyPath: string } {
    const certificatePath = join(dir, "cert.pem");
    const keyPath = join(dir, "key.pem");
    execFileSync(
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            String(days),
            "-subj",
            `/CN=${commonName}`,
            "-addext",
            `subjectAltName=${subjectAltName}`,
            "-keyout",
            keyPath,
            "-out",
            certificatePath,
        ],
        { stdio: "ignore" },
    );
    return { certificatePath, keyPath };
}
