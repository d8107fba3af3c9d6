import type { EdgeConfigSpec } from "../edgeConfigSpec";
import type { ValueGuard } from "./valueGuard";

/**
 * The maps that choose a socket's backend key (cookie and query modes) and the cookie the edge
 * issues; in client-address mode the upstream's ip_hash needs none.
 */
export function affinityMaps(v: ValueGuard, { affinity }: EdgeConfigSpec): string[] {
    if (affinity.kind === "client-address") return [];
    if (affinity.kind === "query") {
        const parameter = v.variableName("affinity.parameter", affinity.parameter);
        return [
            "",
            `    # --- Affinity: the query parameter ${parameter} ------------------------------------------`,
            "    # Every socket of one room (document, tenant) on one backend; without the parameter,",
            "    # the client's address decides.",
            `    map $arg_${parameter} $affinity_key {`,
            "        ''      $binary_remote_addr;",
            `        default $arg_${parameter};`,
            "    }",
            ...affinityKeyText(`$arg_${parameter}`),
        ];
    }
    const cookie = v.variableName("affinity.cookieName", affinity.cookieName);
    const maxAge = v.positiveInt("affinity.maxAgeSeconds", affinity.maxAgeSeconds);
    return [
        "",
        "    # --- Affinity: cookie --------------------------------------------------------------",
        "    # A cookie this edge issued (hex, as $request_id is); any other value counts as none.",
        `    map $cookie_${cookie} $affinity_cookie {`,
        `        ~^[0-9a-f]+$ $cookie_${cookie};`,
        "        default      '';",
        "    }",
        "    # Without one, a browser (it sends Origin with every upgrade) is routed by the id of this",
        "    # very request, which it gets as its cookie: its first socket lands where every later one",
        "    # will. A client that sends neither (a native library) keeps its address.",
        "    map $http_origin $affinity_fresh_key {",
        "        ''      $binary_remote_addr;",
        "        default $request_id;",
        "    }",
        "    map $affinity_cookie $affinity_key {",
        "        ''      $affinity_fresh_key;",
        "        default $affinity_cookie;",
        "    }",
        "    map $http_origin $affinity_fresh_text {",
        "        ''      '';",
        "        default $request_id;",
        "    }",
        ...affinityKeyText("$affinity_cookie", "$affinity_fresh_text"),
        "    # Who gets the cookie: every response to a request without one, but an upgrade without",
        "    # Origin (a native client, left on its address). Its value is a random id: it says nothing",
        "    # of the backends.",
        '    map "$affinity_cookie:$http_upgrade:$http_origin" $affinity_set_cookie {',
        "        ~*^:websocket:$ '';",
        `        ~^: "${cookie}=$request_id; Path=/; Max-Age=${maxAge}; Secure; HttpOnly; SameSite=Lax";`,
        "        default '';",
        "    }",
    ];
}

/**
 * $affinity_key_text: the key as text, or empty where it is the client's address (binary, which
 * the backend reads from X-Real-IP instead). The backend gets it (X-Affinity-Key) to tell, when
 * the fleet changes, which of its sockets now hash to another backend.
 */
function affinityKeyText(text: string, otherwise = "''"): string[] {
    return [`    map ${text} $affinity_key_text {`, `        ''      ${otherwise};`, `        default ${text};`, "    }"];
}

/** The proxying location's line that tells the backend the socket's key (none in client-address mode: X-Real-IP is it). */
export function affinityKeyHeader({ affinity }: EdgeConfigSpec): string[] {
    // Set in every mode, so a client can never send its own.
    const value = affinity.kind === "client-address" ? '""' : "$affinity_key_text";
    return [`            proxy_set_header X-Affinity-Key ${value};`];
}

/** How the upstream picks a backend for the mode. */
export function affinityBalancing(v: ValueGuard, { affinity }: EdgeConfigSpec): string[] {
    if (affinity.kind === "client-address") {
        return [
            "        # Sticky by client address: the first three octets of an IPv4 address, the whole",
            "        # IPv6 address. A client whose address changes may land on another backend.",
            "        ip_hash;",
        ];
    }
    return [
        `        # Sticky by the ${affinity.kind === "cookie" ? "affinity cookie" : `query parameter ${v.variableName("affinity.parameter", affinity.parameter)}`}, consistently hashed (ketama): adding or`,
        "        # removing a backend moves only about its share of the keys.",
        "        hash $affinity_key consistent;",
    ];
}

/** The server-level line that issues the cookie (cookie mode only). */
export function affinityCookieHeader({ affinity }: EdgeConfigSpec): string[] {
    if (affinity.kind !== "cookie") return [];
    return ["        add_header Set-Cookie $affinity_set_cookie always;"];
}

/** The origins whose pages may open sockets: an http-level map. */
export function originPolicyMap(v: ValueGuard, { allowedOrigins }: EdgeConfigSpec): string[] {
    if (allowedOrigins === "any") return [];
    const width = Math.max(7, ...allowedOrigins.map((o) => o.length + 2));
    return [
        "",
        "    # --- Origin policy ----------------------------------------------------------------",
        "    # Pages of these origins may open sockets (cross-site WebSocket hijacking needs another's",
        "    # page); a request without Origin (a native client) passes.",
        "    map $http_origin $origin_allowed {",
        `        ${"''".padEnd(width)} 1;`,
        ...allowedOrigins.map((origin, i) => `        ${originPattern(v.origin(`allowedOrigins[${i}]`, origin)).padEnd(width)} 1;`),
        `        ${"default".padEnd(width)} 0;`,
        "    }",
    ];
}

/** A map source for an origin: the exact string, or for `*.domain` a regex for one more label. */
function originPattern(origin: string): string {
    if (!origin.includes("*.")) return `"${origin}"`;
    return `~^${origin.replace(/\./g, "\\.").replace("*\\.", "[a-z0-9-]+\\.")}$`;
}

/** In the proxying location: refuse what the origin policy refuses, before any backend is chosen. */
export function originPolicyCheck({ allowedOrigins }: EdgeConfigSpec): string[] {
    if (allowedOrigins === "any") return [];
    return ["            if ($origin_allowed = 0) {", "                return 403;", "            }", ""];
}
