/**
 * Obtains the edge's certificate from an ACME CA (RFC 8555) by DNS-01, and says when it is due
 * for renewal. One certificate per edge, whatever the number of proxies: the caller stores it
 * where every proxy takes it from. DNS-01 proves the name through the zone, so it works before
 * the name points at the edge and behind a balancer.
 *
 * The DNS side is a `Dns01` (Route 53 on AWS; Pebble's challenge test server here), so the same
 * code runs against Let's Encrypt and against Debian's `pebble`.
 */
import { X509Certificate } from "node:crypto";
import { Agent } from "node:https";
import { rootCertificates } from "node:tls";
import { AuthorityKeyIdentifierExtension, X509Certificate as PeculiarCertificate } from "@peculiar/x509";
import * as acme from "acme-client";

/** Where the TXT record of a DNS-01 challenge goes. */
export interface Dns01 {
    /** Publishes `value` at `name` (`_acme-challenge.<domain>`), and resolves once the CA can see it. */
    set(name: string, value: string): Promise<void>;
    clear(name: string, value: string): Promise<void>;
}

export interface AcmeAccount {
    /** The CA's directory: Let's Encrypt's by default, Pebble's in tests. */
    readonly directoryUrl: string;
    /** The account's key (PEM); kept by the caller, so renewals use the same account. */
    readonly accountKeyPem: string;
    /** A CA to trust for the directory's own HTTPS, besides the system's (Pebble's test listener). */
    readonly directoryCaPem?: string;
}

export interface IssuedCertificate {
    /** The leaf and its chain, as NGINX's ssl_certificate takes them. */
    readonly certificatePem: string;
    readonly privateKeyPem: string;
}

/** CAs trusted for directories' HTTPS besides the system's roots (Pebble's test listener): only ever added to. */
const directoryCas: string[] = [];

/**
 * Trusts `caPem` for the directory's HTTPS from now on, besides the system's roots. acme-client has
 * one shared HTTP client, so the trust is the process's; it only grows, so issuances running at
 * the same time never take it from each other.
 */
export function trustDirectoryCa(caPem: string | undefined): void {
    if (caPem === undefined || directoryCas.includes(caPem)) return;
    directoryCas.push(caPem);
    acme.axios.defaults.httpsAgent = new Agent({ ca: [...rootCertificates, ...directoryCas] });
}

/**
 * The account of `client`'s key: looked up first (a renewal), made only when the CA has none.
 * (A second newAccount with the terms agreed is an update with nothing to change, which strict
 * CAs such as Pebble refuse; looking up sends none.)
 */
async function useAccount(client: acme.Client): Promise<void> {
    try {
        await client.createAccount({ onlyReturnExisting: true });
    } catch (error) {
        // The CA says so in its own words: Pebble "unable to find existing account", Boulder "No account exists with the provided key".
        if (!/accountDoesNotExist|unable to find existing account|no account exists/i.test(String((error as Error).message))) throw error;
        await client.createAccount({ termsOfServiceAgreed: true });
    }
}

/** A new account key for `AcmeAccount.accountKeyPem`: ECDSA P-256. */
export async function newAccountKey(): Promise<string> {
    return (await acme.crypto.createPrivateEcdsaKey("P-256")).toString();
}

/** Orders a certificate for `domain`, answers its DNS-01 challenge through `dns`, and returns it with its new key. */
export async function issueCertificate(account: AcmeAccount, domain: string, dns: Dns01): Promise<IssuedCertificate> {
    const client = new acme.Client({ directoryUrl: account.directoryUrl, accountKey: account.accountKeyPem });
    const [key, csr] = await acme.crypto.createCsr(
        { commonName: domain, altNames: [domain] },
        await acme.crypto.createPrivateEcdsaKey("P-256"),
    );
    trustDirectoryCa(account.directoryCaPem);
    await useAccount(client);
    const order = await client.createOrder({ identifiers: [{ type: "dns", value: domain }] });
    for (const authorization of await client.getAuthorizations(order)) {
        if (authorization.status === "valid") continue;
        const challenge = authorization.challenges.find((c) => c.type === "dns-01");
        if (!challenge) throw new Error(`${account.directoryUrl} offers no DNS-01 challenge for ${authorization.identifier.value}`);
        const name = `_acme-challenge.${authorization.identifier.value}`;
        const value = await client.getChallengeKeyAuthorization(challenge);
        await dns.set(name, value);
        try {
            // The CA checks the record through the zone's own servers; this machine's resolver may not see the zone at all.
            await client.completeChallenge(challenge);
            await client.waitForValidStatus(challenge);
        } catch (error) {
            throw new Error(`${account.directoryUrl} refused the DNS-01 challenge at ${name}: ${(error as Error).message}`);
        } finally {
            // A record left behind is harmless (the next order overwrites it); losing the order's outcome to it is not.
            await dns.clear(name, value).catch(() => {});
        }
    }
    const finalized = await client.finalizeOrder(order, csr);
    return { certificatePem: await client.getCertificate(finalized), privateKeyPem: key.toString() };
}

/** A renewal window the CA suggests (ACME Renewal Information, RFC 9773). */
export interface RenewalWindow {
    readonly start: Date;
    readonly end: Date;
}

/**
 * The window the CA suggests renewing `certificatePem` in (ARI, RFC 9773 section 4), or undefined
 * when its directory offers no `renewalInfo`. A CA moves the window earlier when it means to
 * revoke the certificate (a mis-issuance, a key compromise), into the past if it must be now.
 */
export async function renewalWindow(
    account: Pick<AcmeAccount, "directoryUrl" | "directoryCaPem">,
    certificatePem: string,
): Promise<RenewalWindow | undefined> {
    trustDirectoryCa(account.directoryCaPem);
    const directory = (await acme.axios.get(account.directoryUrl, { timeout: 10_000 })).data as { renewalInfo?: unknown };
    if (typeof directory.renewalInfo !== "string") return undefined;
    const url = `${directory.renewalInfo.replace(/\/$/, "")}/${ariCertificateId(certificatePem)}`;
    const info = (await acme.axios.get(url, { timeout: 10_000 })).data as { suggestedWindow?: { start?: string; end?: string } };
    const start = new Date(String(info.suggestedWindow?.start));
    const end = new Date(String(info.suggestedWindow?.end));
    if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end < start)
        throw new Error(`${url}: no valid suggestedWindow in ${JSON.stringify(info)}`);
    return { start, end };
}

/**
 * ARI's identifier of a certificate (RFC 9773 section 4.1): its authority key identifier and its
 * serial number's DER content octets, each base64url without padding, joined by a dot.
 */
export function ariCertificateId(certificatePem: string): string {
    const leaf = new PeculiarCertificate(firstCertificate(certificatePem));
    const keyId = leaf.getExtension(AuthorityKeyIdentifierExtension)?.keyId;
    if (!keyId) throw new Error("the certificate has no authority key identifier, which ARI names it by");
    // @peculiar/x509 keeps the INTEGER's content octets as they are (a leading 00 too), in hex.
    const serial = Buffer.from(leaf.serialNumber, "hex");
    return `${Buffer.from(keyId, "hex").toString("base64url")}.${serial.toString("base64url")}`;
}

/**
 * The moment to renew in a suggested window: a point spread over it as RFC 9773 asks (so that
 * the CA's certificates do not all come back at once), chosen by the certificate's own
 * fingerprint, so every preview and up of one certificate picks the same one.
 */
export function renewalPoint(window: RenewalWindow, certificatePem: string): Date {
    const fraction =
        Number.parseInt(new X509Certificate(firstCertificate(certificatePem)).fingerprint256.replace(/:/g, "").slice(0, 8), 16) / 2 ** 32;
    return new Date(window.start.getTime() + fraction * (window.end.getTime() - window.start.getTime()));
}

/**
 * When `certificatePem` is due for renewal: at its own renewal time (renewalTime), or earlier
 * where the CA offers ACME Renewal Information and its suggested window says so, as it does when
 * it means to revoke the certificate. Never later: a renewal schedule is sized for the
 * certificate's own time. A CA that does not answer changes nothing (its renewal information is
 * advice).
 */
export async function renewalDue(
    account: Pick<AcmeAccount, "directoryUrl" | "directoryCaPem">,
    certificatePem: string,
    /** Its own renewal time, if kept (as the order's state keeps it); renewalTime otherwise. */
    own: Date = renewalTime(certificatePem),
): Promise<{ readonly at: Date; readonly by: "renewalInfo" | "renewalTime" }> {
    const window = await renewalWindow(account, certificatePem).catch(() => undefined);
    const suggested = window && renewalPoint(window, certificatePem);
    return suggested && suggested < own ? { at: suggested, by: "renewalInfo" } : { at: own, by: "renewalTime" };
}

function firstCertificate(chainPem: string): string {
    const match = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chainPem);
    if (!match) throw new Error("not a PEM certificate");
    return match[0];
}

/**
 * When a certificate is due for renewal: once a third of its lifetime is left (30 of 90 days, as
 * Let's Encrypt advises; 2 of 6 days for its short-lived certificates).
 */
export function renewalTime(certificatePem: string): Date {
    const certificate = new X509Certificate(certificatePem);
    const notBefore = Date.parse(certificate.validFrom);
    const notAfter = Date.parse(certificate.validTo);
    return new Date(notAfter - (notAfter - notBefore) / 3);
}
