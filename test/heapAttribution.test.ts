// The heap profile's arithmetic: massif's tree read back into per-socket figures by category.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { attribute, parseSnapshot } from "../bench/nginxHeap";

// The shape massif writes for `vgdb detailed_snapshot`: indented nodes, children summing to parents.
const snapshot = (sendBuffers: number, sslObjects: number, extra: number) => `desc: --tool=massif
cmd: nginx
time_unit: i
#-----------
snapshot=0
#-----------
time=0
mem_heap_B=${1000 + sendBuffers + sslObjects}
mem_heap_extra_B=${extra}
mem_stacks_B=0
heap_tree=detailed
n3: ${1000 + sendBuffers + sslObjects} (heap allocation functions) malloc/new/new[], --alloc-fns, etc.
 n1: ${sendBuffers} 0x154CFE: ngx_alloc (in /usr/sbin/nginx)
  n1: ${sendBuffers} 0x131786: ngx_create_temp_buf (in /usr/sbin/nginx)
   n1: ${sendBuffers} 0x162DB0: ngx_ssl_send_chain (in /usr/sbin/nginx)
    n0: ${sendBuffers} 0x132925: ngx_chain_writer (in /usr/sbin/nginx)
 n1: ${sslObjects} 0x4C053E8: CRYPTO_zalloc (in /usr/lib/x86_64-linux-gnu/libcrypto.so.3)
  n0: ${sslObjects} 0x4964733: SSL_new (in /usr/lib/x86_64-linux-gnu/libssl.so.3)
 n0: 1000 in 3 places, all below massif's threshold (0.10%)
`;

describe("NGINX heap attribution", () => {
    it("reads every leaf of massif's tree with the functions on its stack", () => {
        const parsed = parseSnapshot(snapshot(16384, 7608, 100));
        assert.equal(parsed.heapBytes, 1000 + 16384 + 7608);
        assert.equal(parsed.extraBytes, 100);
        assert.equal(
            [...parsed.leaves.values()].reduce((a, b) => a + b, 0),
            parsed.heapBytes,
        );
        assert.ok([...parsed.leaves.keys()].some((k) => k.includes("ngx_ssl_send_chain | ngx_chain_writer")));
    });

    it("charges the growth between snapshots to categories, per socket", () => {
        const sockets = 100;
        const rows = attribute(
            parseSnapshot(snapshot(0, 0, 100)),
            parseSnapshot(snapshot(16384 * sockets, 7608 * 2 * sockets, 100 + 3000 * sockets)),
            sockets,
        );
        const perSocket = (prefix: string) => rows.find((r) => r.name.startsWith(prefix))?.bytesPerSocket;
        assert.equal(perSocket("NGINX TLS write buffer on the backend leg"), 16384);
        assert.equal(perSocket("OpenSSL connection objects"), 7608 * 2);
        assert.equal(perSocket("glibc malloc"), 3000);
        assert.equal(perSocket("other NGINX"), 0, "what was there before the sockets is not charged to them");
    });
});
