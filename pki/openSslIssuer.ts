import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { CertificateSpec, PkiSpec } from "./pkiSpec";

const run = promisify(execFile);

export interface LocalCertificate {
    readonly name: string;
    readonly certificatePem: string;
    readonly privateKeyPem: string;
}

export interface LocalPki {
    readonly caCertificatePem: string;
    readonly caCertificatePath: string;
    /** Edge leaf followed by the CA, as NGINX's ssl_certificate wants it. */
    readonly edgeCertificateChainPem: string;
    readonly edgePrivateKeyPem: string;
    readonly backendCertificates: readonly LocalCertificate[];
    readonly proxyClientCertificate: LocalCertificate;
}

/**
 * Issues `spec` with the openssl command line into `dir` (CA, then every leaf), the local
 * twin of the EdgePki component. Like Pulumi state, what `dir` already holds is kept while
 * its part of the spec is unchanged, so a restarted stack keeps the CA its users trust.
 * `renew` names leaves to issue afresh anyway (new key, new serial). Keys are written 0600.
 */
export async function issueWithOpenSsl(
    spec: PkiSpec,
    dir: string,
    options: {
        openssl?: string;
        renew?: readonly string[];
        /** The edge's certificate (chain) and key from elsewhere (an ACME CA's), when the spec has the stack's CA sign none. */
        edgeCertificate?: { readonly certificatePem: string; readonly privateKeyPem: string };
    } = {},
): Promise<LocalPki> {
    const openssl = options.openssl ?? "openssl";
    const renew = new Set(options.renew ?? []);
    if (!spec.edge && !options.edgeCertificate) throw new Error("issueWithOpenSsl: the spec has no edge certificate, and none was given");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const caKey = join(dir, "ca.key");
    const caCert = join(dir, "ca.crt");
    const caFresh = !(await issuedFor(dir, "ca", { algorithm: spec.keyAlgorithm, organization: spec.organization, ca: spec.ca }));
    if (caFresh) {
        await generateKey(openssl, spec, caKey);
        await run(openssl, [
            "req",
            "-x509",
            "-new",
            "-key",
            caKey,
            "-out",
            caCert,
            "-subj",
            subject(spec.organization, spec.ca.commonName),
            "-days",
            String(Math.ceil(spec.ca.validityHours / 24)),
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-addext",
            "subjectKeyIdentifier=hash",
        ]);
        await recordIssued(dir, "ca", { algorithm: spec.keyAlgorithm, organization: spec.organization, ca: spec.ca });
    }

    const issue = async (cert: CertificateSpec): Promise<LocalCertificate> => {
        const key = join(dir, `${cert.name}.key`);
        const csr = join(dir, `${cert.name}.csr`);
        const crt = join(dir, `${cert.name}.crt`);
        const extensions = join(dir, `${cert.name}.ext`);
        const issuedSpec = { cert, validityHours: spec.leafValidityHours };
        if (!caFresh && !renew.has(cert.name) && (await issuedFor(dir, cert.name, issuedSpec))) {
            return { name: cert.name, certificatePem: await readFile(crt, "utf8"), privateKeyPem: await readFile(key, "utf8") };
        }
        await generateKey(openssl, spec, key);
        await run(openssl, ["req", "-new", "-key", key, "-out", csr, "-subj", subject(spec.organization, cert.commonName)]);
        await writeFile(extensions, leafExtensions(cert));
        await run(openssl, [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            caCert,
            "-CAkey",
            caKey,
            "-set_serial",
            `0x${randomBytes(16)
                .toString("hex")
                .replace(/^[89a-f]/, "1")}`,
            "-days",
            String(Math.ceil(spec.leafValidityHours / 24)),
            "-extfile",
            extensions,
            "-out",
            crt,
        ]);
        await recordIssued(dir, cert.name, issuedSpec);
        return { name: cert.name, certificatePem: await readFile(crt, "utf8"), privateKeyPem: await readFile(key, "utf8") };
    };

    const caCertificatePem = await readFile(caCert, "utf8");
    const edge = spec.edge
        ? await issue(spec.edge).then((issued) => ({ ...issued, certificatePem: issued.certificatePem + caCertificatePem }))
        : options.edgeCertificate;
    if (!edge) throw new Error("unreachable");
    const backendCertificates = await Promise.all(spec.backends.map(issue));
    const proxyClientCertificate = await issue(spec.proxyClient);
    return {
        caCertificatePem,
        caCertificatePath: caCert,
        edgeCertificateChainPem: edge.certificatePem,
        edgePrivateKeyPem: edge.privateKeyPem,
        backendCertificates,
        proxyClientCertificate,
    };
}

/** True when `dir` holds `name` issued from exactly `part` of the spec. */
async function issuedFor(dir: string, name: string, part: unknown): Promise<boolean> {
    try {
        return (await readFile(join(dir, `${name}.spec.json`), "utf8")) === JSON.stringify(part);
    } catch {
        return false;
    }
}

async function recordIssued(dir: string, name: string, part: unknown): Promise<void> {
    await writeFile(join(dir, `${name}.spec.json`), JSON.stringify(part));
}

async function generateKey(openssl: string, spec: PkiSpec, path: string): Promise<void> {
    const curve = { "ECDSA-P256": "P-256" }[spec.keyAlgorithm];
    await run(openssl, ["genpkey", "-algorithm", "EC", "-pkeyopt", `ec_paramgen_curve:${curve}`, "-out", path]);
    await chmod(path, 0o600);
}

function subject(organization: string, commonName: string): string {
    const escaped = (s: string) => s.replace(/[/\\=]/g, (c) => `\\${c}`);
    return `/O=${escaped(organization)}/CN=${escaped(commonName)}`;
}

function leafExtensions(cert: CertificateSpec): string {
    const sans = [...cert.dnsNames.map((n) => `DNS:${n}`), ...cert.ipAddresses.map((ip) => `IP:${ip}`)];
    const extendedUsages = cert.usages.map((u) => ({ server_auth: "serverAuth", client_auth: "clientAuth" })[u]);
    return [
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature, keyEncipherment",
        `extendedKeyUsage = ${extendedUsages.join(", ")}`,
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid",
        ...(sans.length > 0 ? [`subjectAltName = ${sans.join(", ")}`] : []),
        "",
    ].join("\n");
}
