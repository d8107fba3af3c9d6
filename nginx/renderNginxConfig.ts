import type { EdgeConfigSpec } from "./edgeConfigSpec";
import { httpBasics } from "./render/httpContext";
import { mainContext } from "./render/mainContext";
import { servers } from "./render/servers";
import { tlsPolicyBlock } from "./render/tls";
import { upstreamBlock } from "./render/upstream";
import { ValueGuard } from "./render/valueGuard";

export { healthPath } from "./render/locations";
export { upstreamName } from "./render/upstream";
export { RenderError } from "./render/valueGuard";

/**
 * Renders the edge's complete nginx.conf. Pure: the same spec always gives the same bytes, which
 * is what the deploy trigger hashes and what the pull-request preview diffs.
 *
 * Each concern has its own file under render/, in the order the config reads: main context and
 * events, http basics and the upgrade map, the upstream, the TLS policy, the servers and their
 * locations. Every value that lands in the text, comments included, is checked against the shape
 * NGINX expects at that position, so no caller can smuggle a `;`, a brace, a newline or a
 * variable into the config.
 */
export function renderNginxConfig(spec: EdgeConfigSpec): string {
    const v = new ValueGuard();
    return [
        ...mainContext(v, spec),
        "",
        "http {",
        ...httpBasics(v, spec),
        "",
        ...upstreamBlock(v, spec),
        "",
        ...tlsPolicyBlock(v, spec),
        "",
        ...servers(v, spec),
        "}",
        "",
    ].join("\n");
}
