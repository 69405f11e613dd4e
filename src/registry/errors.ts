/**
 * Typed registry errors (after go-containerregistry's remote/transport/error.go).
 *
 * A registry answers a failed request with a JSON body
 * `{"errors":[{"code":"BLOB_UNKNOWN","message":"...","detail":...}]}`
 * (OCI distribution-spec, "Error Codes"). `RegistryError` keeps those entries,
 * the HTTP status and the request, and its message follows the project style
 * "verb-ing noun: cause; what to do".
 */
import { VriftError } from '../errors';

/** Error codes defined by the OCI distribution spec (plus Docker's TOOMANYREQUESTS). */
export type RegistryErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | (string & {});

/** One entry of a distribution-spec error body. */
export interface RegistryDiagnostic {
  code: RegistryErrorCode;
  message?: string;
  detail?: unknown;
}

/** What a RegistryError knows about the failed request. */
export interface RegistryErrorInit {
  /** HTTP status, or undefined for a network failure. */
  status?: number;
  method?: string;
  url?: string;
  errors?: RegistryDiagnostic[];
  cause?: unknown;
}

/**
 * A failed registry request. `message` is "verb-ing noun: cause; what to do";
 * `status`, `errors` (codes and messages from the body), `method` and `url`
 * are kept for callers that branch on them.
 */
export class RegistryError extends VriftError {
  readonly status?: number;
  readonly method?: string;
  readonly url?: string;
  readonly errors: RegistryDiagnostic[];

  constructor(message: string, init: RegistryErrorInit = {}) {
    super(message, init.cause === undefined ? {} : { cause: init.cause });
    this.name = 'RegistryError';
    this.status = init.status;
    this.method = init.method;
    this.url = init.url;
    this.errors = init.errors ?? [];
  }

  /** Whether the registry reported `code` in the error body. */
  hasCode(code: RegistryErrorCode): boolean {
    return this.errors.some((e) => e.code === code);
  }

  /** Whether a retry may succeed: 5xx, 429, or no HTTP answer at all. */
  get temporary(): boolean {
    return this.status === undefined || this.status >= 500 || this.status === 429;
  }
}

/**
 * Parse a distribution-spec error body. Anything else (HTML from a proxy, an
 * empty body) yields an empty list.
 */
export function parseErrorBody(text: string): RegistryDiagnostic[] {
  try {
    const body = JSON.parse(text) as { errors?: unknown };
    if (!Array.isArray(body.errors)) return [];
    return body.errors
      .filter((e): e is { code: string; message?: unknown; detail?: unknown } => typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string')
      .map((e) => ({ code: e.code, message: typeof e.message === 'string' ? e.message : undefined, detail: e.detail }));
  } catch {
    return [];
  }
}

/** What to do about a failure with this status / these codes. */
function advice(status: number | undefined, errors: RegistryDiagnostic[], registry: string): string {
  const codes = new Set(errors.map((e) => e.code));
  if (status === 401 || codes.has('UNAUTHORIZED')) {
    return `log in to ${registry} (\`docker login ${registry}\` writes ~/.docker/config.json; DOCKER_CONFIG names another directory)`;
  }
  if (status === 403 || codes.has('DENIED')) return `check that your account may access this repository on ${registry}`;
  if (codes.has('MANIFEST_UNKNOWN') || codes.has('NAME_UNKNOWN') || status === 404) return 'check the repository, tag or digest (`skopeo list-tags docker://<repo>` lists tags)';
  if (status === 429 || codes.has('TOOMANYREQUESTS')) return 'wait and retry';
  if (status !== undefined && status >= 500) return `the registry ${registry} failed; retry later or check its logs`;
  return '';
}

/**
 * A RegistryError for an HTTP answer that is not the expected one.
 * @param doing "verb-ing noun", e.g. "pushing blob sha256:ab.. to 127.0.0.1:5000/app"
 * @param registry host[:port], named in the advice
 */
export function httpError(doing: string, registry: string, res: { status: number; statusText?: string }, bodyText: string, req: { method: string; url: string }): RegistryError {
  const errors = parseErrorBody(bodyText);
  const detail = errors.length
    ? errors.map((e) => `${e.code}${e.message ? ` (${e.message})` : ''}`).join(', ')
    : bodyText.trim().slice(0, 200).replace(/\s+/g, ' ') || res.statusText || '';
  const what = advice(res.status, errors, registry);
  return new RegistryError(`${doing}: ${req.method} ${redactUrl(req.url)} answered ${res.status}${detail ? `: ${detail}` : ''}${what ? `; ${what}` : ''}`, {
    status: res.status,
    method: req.method,
    url: req.url,
    errors,
  });
}

/** A RegistryError for a request that got no HTTP answer (connection refused, reset, TLS). */
export function networkError(doing: string, registry: string, err: unknown, req: { method: string; url: string }): RegistryError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
  let what = `check that ${registry} is up and reachable`;
  if (/SSL|TLS|EPROTO|wrong version number|certificate/i.test(`${why} ${cause?.message ?? ''}`)) {
    what = `if ${registry} speaks plain HTTP, list it in VRIFT_INSECURE_REGISTRIES or pass --insecure-registry ${registry}`;
  }
  return new RegistryError(`${doing}: ${req.method} ${redactUrl(req.url)} failed: ${why}; ${what}`, { method: req.method, url: req.url, cause: err });
}

/** A URL without query credentials or upload state tokens, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    if (u.search) u.search = '?...';
    return u.toString();
  } catch {
    return url;
  }
}
