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
