/**
 * Registry authentication (distribution "token authentication specification"
 * and RFC 7235 challenges): what `GET /v2/` answers decides the scheme.
 *
 * - 200: anonymous.
 * - 401 `WWW-Authenticate: Basic realm=...`: HTTP basic auth on every request
 *   (needs credentials).
 * - 401 `WWW-Authenticate: Bearer realm=...,service=...[,scope=...]`: a token
 *   is fetched from `realm?service=<service>&scope=<scope>...` (with basic
 *   credentials when there are some, anonymously otherwise) and sent as
 *   `Authorization: Bearer <token>`. Tokens are cached per set of scopes until
 *   `expires_in` (default 60 s, the spec's minimum) runs out.
 */

/** A parsed `WWW-Authenticate` challenge. Parameter names are lowercased. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parse the first challenge of a `WWW-Authenticate` header value, e.g.
 * `Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"`.
 * @returns undefined when the header is missing or empty
 */
export function parseChallenge(header: string | null | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9._~+/-]*)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p = re.exec(m[2]); p; p = re.exec(m[2])) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  }
  return { scheme: m[1].toLowerCase(), params };
}

/** A scope for a repository: `repository:<name>:<actions>`. */
export function repoScope(repository: string, actions: 'pull' | 'pull,push'): string {
  return `repository:${repository}:${actions}`;
}

/**
 * The union of scopes, merging the actions of equal resources
 * (`repository:a:pull` + `repository:a:push` -> `repository:a:pull,push`),
 * sorted so that equal sets give equal cache keys.
 */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const s of scopes.flatMap((x) => x.split(' ')).filter(Boolean)) {
    const i = s.lastIndexOf(':');
    const resource = i > 0 ? s.slice(0, i) : s;
    const actions = i > 0 ? s.slice(i + 1).split(',') : [];
    const set = byResource.get(resource) ?? new Set<string>();
    for (const a of actions) if (a) set.add(a);
    byResource.set(resource, set);
  }
  return [...byResource.entries()].map(([r, a]) => (a.size ? `${r}:${[...a].sort().join(',')}` : r)).sort();
}

/** `Authorization` value for HTTP basic auth. */
export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}
