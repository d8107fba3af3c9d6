// Which server of an NGINX upstream a client lands on, predicted here the way NGINX decides it,
// for the two balancing methods the project renders, with every server up and of weight 1:
//
//   `ip_hash;`                 src/http/modules/ngx_http_upstream_ip_hash_module.c
//       ngx_http_upstream_init_ip_hash_peer (1.22.1 lines 119-140: IPv4 hashes the first 3 bytes
//       of sin_addr, IPv6 all 16 of sin6_addr, hash starts at 89) and
//       ngx_http_upstream_get_ip_hash_peer (lines 166-192: a single peer is plain round
//       robin; hash = (hash * 113 + byte) % 6271 per byte; w = hash % total_weight; walk weights).
//   `hash $key consistent;`    src/http/modules/ngx_http_upstream_hash_module.c
//       ngx_http_upstream_init_chash (1.22.1 lines 286-408: per peer, host and port split at the
//       last ':' followed only by digits, base = crc32(host "\0" port), 160 x weight points, each
//       crc32(base + previous point as 4 little-endian bytes), sorted, duplicates dropped),
//       ngx_http_upstream_find_chash_point (lines 432-460: first point >= hash, may be `number`),
//       ngx_http_upstream_init_chash_peer (line 480: hash = ngx_crc32_long(key)) and
//       ngx_http_upstream_get_chash_peer (lines 512-527: empty key or a single peer is round
//       robin; otherwise the peer whose `server` string is that of point[hash % number]).
//   src/http/ngx_http_upstream_round_robin.c (lines 79-112: peers in config order, `server` is the
//       `server` directive's argument as written, src/http/ngx_http_upstream.c lines 6075-6087).
//   src/http/ngx_http_variables.c ngx_http_variable_binary_remote_addr (lines 1220-1268).
//   src/core/ngx_crc32.h: the standard (IEEE, reflected 0xEDB88320) CRC-32.
// (nginx/nginx at tag release-1.22.1, Debian 12's nginx; master as of 2026 has the same logic, with
// `peers->number < 2` for `peers->single` and the points rebuilt when a zone's peers change.)
//
// No dependencies: it ships inside the backend app.

import { isIPv4, isIPv6 } from "node:net";

const crcTable = new Int32Array(256);
for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crcTable[n] = c;
}

/** ngx_crc32_update: continues the running (not yet finalised) CRC `crc` over `bytes`. */
function crc32Update(crc, bytes) {
    let c = crc;
    for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return c >>> 0;
}

const crcInit = 0xffffffff;
const crcFinal = (crc) => (crc ^ 0xffffffff) >>> 0;

/** ngx_crc32_long: the CRC-32 of `bytes`. */
function crc32(bytes) {
    return crcFinal(crc32Update(crcInit, bytes));
}

/** The 4 bytes of an IPv4 address in dotted-quad text. */
function ipv4Bytes(text) {
    return text.split(".").map(Number);
}

/** The 16 bytes of an IPv6 address in text ("::1", "fe80::1%eth0", "::ffff:127.0.0.1"). */
function ipv6Bytes(text) {
    const address = text.split("%")[0];
    const groups = (part) => {
        if (part === "") return [];
        const words = [];
        for (const group of part.split(":")) {
            if (group.includes(".")) {
                const [a, b, c, d] = ipv4Bytes(group);
                words.push((a << 8) | b, (c << 8) | d);
            } else {
                words.push(Number.parseInt(group, 16));
            }
        }
        return words;
    };
    const [head, tail] = address.split("::");
    const front = groups(head);
    const back = tail === undefined ? [] : groups(tail);
    const words = [...front, ...new Array(8 - front.length - back.length).fill(0), ...back];
    const bytes = Buffer.alloc(16);
    for (const [i, word] of words.entries()) bytes.writeUInt16BE(word, 2 * i);
    return bytes;
}

/**
 * What NGINX's `$binary_remote_addr` is for a client at `address` (as `$remote_addr` prints it):
 * the 4 bytes of sin_addr for IPv4, the 16 of sin6_addr for IPv6 (IPv4-mapped included).
 */
export function binaryAddress(address) {
    if (isIPv4(address)) return Buffer.from(ipv4Bytes(address));
    if (isIPv6(address)) return ipv6Bytes(address);
    throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}

/**
 * The index (in config order) of the server an `ip_hash;` upstream of `serverCount` servers, each
 * one address, all up, weight 1, sends a client at `address` to. An IPv4 client is hashed on its
 * first three bytes (its /24); an IPv6 one (an IPv4-mapped one too, when NGINX listens on IPv6) on
 * all sixteen.
 */
export function ipHashIndex(address, serverCount) {
    if (!(Number.isInteger(serverCount) && serverCount > 0)) throw new RangeError(`bad server count: ${serverCount}`);
    const bytes = binaryAddress(address);
    if (serverCount < 2) return 0; // a single peer: round robin, no hashing
    const hashed = bytes.length === 4 ? 3 : 16;
    let hash = 89;
    for (let i = 0; i < hashed; i++) hash = (hash * 113 + bytes[i]) % 6271;
    // w = hash % total_weight, then `while (w >= peer->weight) { w -= peer->weight; p++; }`:
    // with every weight 1 the peer index is w itself.
    return hash % serverCount;
}

/** Splits a `server` argument into the host and port bytes NGINX hashes (unix: sockets have no port). */
function hostAndPort(server) {
    if (server.length >= 5 && server.slice(0, 5).toLowerCase() === "unix:") return { host: server.slice(5), port: "" };
    for (let j = 0; j < server.length; j++) {
        const c = server[server.length - j - 1];
        if (c === ":") return { host: server.slice(0, server.length - j - 1), port: server.slice(server.length - j) };
        if (c < "0" || c > "9") break;
    }
    return { host: server, port: "" };
}

/** The sorted, de-duplicated continuum of an upstream: point hashes and, for each, its server's index. */
function continuum(servers) {
    const points = [];
    servers.forEach((server, index) => {
        const { host, port } = hostAndPort(server);
        const base = crc32Update(crc32Update(crc32Update(crcInit, Buffer.from(host)), Buffer.of(0)), Buffer.from(port));
        const previous = Buffer.alloc(4); // prev_hash starts at 0; then the last point, little-endian
        for (let j = 0; j < 160; j++) {
            const hash = crcFinal(crc32Update(base, previous));
            points.push({ hash, index });
            previous.writeUInt32LE(hash, 0);
        }
    });
    // ngx_qsort is glibc's qsort (a merge sort, so stable); Array.prototype.sort is stable too. Of
    // equal hashes (two servers' points colliding: rare) the first in config order is kept.
    points.sort((a, b) => a.hash - b.hash);
    const hashes = [];
    const owners = [];
    for (const point of points) {
        if (hashes.length > 0 && hashes[hashes.length - 1] === point.hash) continue;
        hashes.push(point.hash);
        owners.push(point.index);
    }
    return { hashes: Uint32Array.from(hashes), owners: Uint16Array.from(owners) };
}

const continua = new Map();
const continuaKept = 16;

/**
 * The index in `servers` (the upstream's `server` arguments in config order, as written, e.g.
 * "127.0.0.1:40001" or "[::1]:8443") of the server a `hash <key> consistent;` upstream, all
 * servers up and weight 1, sends the request whose key evaluates to `key` to. -1 for an empty key,
 * which NGINX balances round robin. When one server name resolves to several addresses, this is
 * still that server's index; NGINX picks among its addresses round robin.
 */
export function consistentHashIndex(key, servers) {
    if (servers.length === 0) throw new RangeError("no servers");
    const bytes = typeof key === "string" ? Buffer.from(key) : key;
    if (bytes.length === 0) return -1;
    if (servers.length === 1) return 0;
    const id = servers.join("\n");
    let table = continua.get(id);
    if (table === undefined) {
        table = continuum(servers);
        if (continua.size >= continuaKept) continua.delete(continua.keys().next().value);
        continua.set(id, table);
    }
    const hash = crc32(bytes);
    // ngx_http_upstream_find_chash_point: the first point >= hash; `number` when there is none.
    const { hashes, owners } = table;
    let i = 0;
    let j = hashes.length;
    while (i < j) {
        const k = (i + j) >>> 1;
        if (hash > hashes[k]) i = k + 1;
        else if (hash < hashes[k]) j = k;
        else {
            i = k;
            break;
        }
    }
    return owners[i % hashes.length];
}
