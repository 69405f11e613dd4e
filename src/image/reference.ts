/**
 * Docker image references (distribution/reference grammar, simplified):
 * `[domain[:port]/]path[:tag][@sha256:hex]`.
 */
import { VriftError } from '../errors';

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)';
const TAG = '[\\w][\\w.-]{0,127}';
const REF_RE = new RegExp(`^(?:(${DOMAIN})/)?(${COMPONENT}(?:/${COMPONENT})*)(?::(${TAG}))?(?:@(sha256:[0-9a-f]{64}))?$`);

/** A parsed reference. `name` excludes tag and digest; `tag` defaults to "latest" when no digest is given. */
export interface Reference {
  /** As written, e.g. `localhost:5000/app:1`. */
  raw: string;
  /** Repository as written, with domain when given, e.g. `localhost:5000/app`. */
  name: string;
  tag?: string;
  digest?: string;
  /** `docker.io/library/app:1`-style fully qualified form. */
  familiar: string;
  /** Fully qualified `domain/path`, e.g. `docker.io/library/app`. */
  fullName: string;
}

/**
 * Parse an image reference.
 * @throws VriftError naming the reference when it does not parse
 */
export function parseReference(raw: string, what = 'image reference'): Reference {
  const m = REF_RE.exec(raw);
  let domain = m?.[1];
  let path = m?.[2];
  if (!m || !path) {
    throw new VriftError(`parsing ${what} ${JSON.stringify(raw)}: not a valid reference; use name[:tag], e.g. myapp:1.0 (lowercase name)`);
  }
  // "a/b" is domain "a" only when it looks like a host (has "." or ":" or is localhost).
  if (domain !== undefined && !/[.:]/.test(domain) && domain !== 'localhost') {
    path = `${domain}/${path}`;
    domain = undefined;
  }
  const tag = m[3] ?? (m[4] ? undefined : 'latest');
  const name = domain ? `${domain}/${path}` : path;
  const fullDomain = domain ?? 'docker.io';
  const fullPath = !domain && !path.includes('/') ? `library/${path}` : path;
  const fullName = `${fullDomain}/${fullPath}`;
  const suffix = `${tag ? `:${tag}` : ''}${m[4] ? `@${m[4]}` : ''}`;
  return { raw, name, tag, digest: m[4], familiar: `${fullName}${suffix}`, fullName };
}

/** Whether two references name the same tag or digest (after normalization). */
export function sameReference(a: string, b: string): boolean {
  try {
    return parseReference(a).familiar === parseReference(b).familiar;
  } catch {
    return a === b;
  }
}
