/**
 * An OCI distribution-spec client over Node's global fetch (spec:
 * opencontainers/distribution-spec spec.md; Docker registry HTTP API v2).
 *
 * One `Registry` per `host[:port]`: it pings `GET /v2/` once to learn the
 * auth scheme (see auth.ts), keeps bearer tokens per scope set, retries
 * requests that failed with 5xx/429 or no answer (bounded, exponential
 * backoff), and turns every other failure into a RegistryError with the
 * registry's error codes.
 *
 * Pull: manifests (`GET /v2/<name>/manifests/<ref>`) and blobs streamed to a
 * file with digest and size verified. Push: `HEAD` for blobs already there,
 * cross-repository mount (`POST .../blobs/uploads/?mount=&from=`), monolithic
 * upload (`POST` then `PUT ?digest=`) or chunked upload (`PATCH` with
 * `Content-Range`, then `PUT ?digest=`) for blobs of at least
 * `chunkThreshold` bytes, the blob digest checked with `HEAD` afterwards, and
 * the manifest `PUT` with its media type.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VriftError } from '../errors';
import { sha256Digest, verifyingPassThrough } from '../image/digest';
import { MediaType } from '../image/types';
import { basicAuthorization, mergeScopes, parseChallenge, repoScope } from './auth';
import { credentialsFor, type Credentials } from './credentials';
import { httpError, networkError, RegistryError } from './errors';
import { insecureRegistriesFromEnv, isLoopbackRegistry } from './reference';

/** Options shared by every request to registries. Defaults in brackets. */
export interface RegistryOptions {
  /** `host[:port]` names to speak plain HTTP to, besides loopback and VRIFT_INSECURE_REGISTRIES. [none] */
  insecure?: string[];
  /** Credentials per registry; default: the Docker client config (credentials.ts). */
  credentials?: (registry: string) => Credentials | undefined;
  /** Retries after a 5xx/429 answer or a network failure. [3] */
  retries?: number;
  /** First backoff delay in ms, doubled each retry. [200] */
  retryDelayMs?: number;
  /** Blobs of at least this many bytes are uploaded in chunks. [64 MiB] */
  chunkThreshold?: number;
  /** Bytes per PATCH of a chunked upload (held in memory once). [16 MiB] */
  chunkSize?: number;
  /** Progress lines. [none] */
  log?: (line: string) => void;
}

/** The manifest media types a pull accepts, most wanted first. */
export const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest];

/** A manifest as fetched: exact bytes, media type and digest. */
export interface FetchedManifest {
  raw: Buffer;
  mediaType: string;
  /** `sha256:<hex>` of raw. */
  digest: string;
}

/** How a blob got into a repository. */
export type BlobPushOutcome = 'existed' | 'mounted' | 'uploaded' | 'uploaded-chunked';

/** A blob to push: its descriptor values and a way to read its bytes (fresh stream per call). */
export interface BlobToPush {
  digest: string;
  /** Bytes. */
  size: number;
  open: () => Promise<Readable>;
  /** Another repository of the same registry known to hold the blob (tried with a cross-repository mount). */
  mountFrom?: string;
  /** Names the blob in messages, e.g. "layer 3". */
  what?: string;
}

type Auth = { kind: 'anonymous' } | { kind: 'basic' } | { kind: 'bearer'; realm: string; service?: string };

interface Req {
  method: string;
  /** Path below the registry root (`/v2/...`) or an absolute URL (upload locations). */
  url: string;
  scopes: string[];
  headers?: Record<string, string>;
  /** A fresh body per attempt (Buffers are reused; streams reopened). */
  body?: () => Promise<Buffer | Readable | undefined>;
  /** Statuses that count as success. */
  expect: number[];
  /** Attempts beyond the first (default: the registry's retries). */
  retries?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client for one registry (`host[:port]`). */
export class Registry {
  readonly registry: string;
  readonly scheme: 'http' | 'https';
  readonly base: string;
  private readonly opts: Required<Omit<RegistryOptions, 'insecure' | 'log'>> & { log: (line: string) => void };
  private auth?: Promise<Auth>;
  private readonly tokens = new Map<string, { token: string; expires: number }>();
  private creds?: { value: Credentials | undefined };
  /** Token requests made (for tests and logs). */
  tokenRequests = 0;

  /**
   * @param registry `host[:port]`; `docker.io` is served by `registry-1.docker.io`
   */
  constructor(registry: string, opts: RegistryOptions = {}) {
    this.registry = registry;
    const insecure = [...(opts.insecure ?? []), ...insecureRegistriesFromEnv()];
    this.scheme = isLoopbackRegistry(registry) || insecure.includes(registry) ? 'http' : 'https';
    const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
    this.base = `${this.scheme}://${host}`;
    this.opts = {
      credentials: opts.credentials ?? ((r) => credentialsFor(r)),
      retries: opts.retries ?? 3,
      retryDelayMs: opts.retryDelayMs ?? 200,
      chunkThreshold: opts.chunkThreshold ?? 64 * 1024 * 1024,
      chunkSize: opts.chunkSize ?? 16 * 1024 * 1024,
      log: opts.log ?? (() => undefined),
    };
    if (!(this.opts.chunkSize > 0) || !(this.opts.chunkThreshold > 0)) {
      throw new VriftError(`configuring registry ${registry}: chunk size and threshold must be positive byte counts`);
    }
  }

  private credentials(): Credentials | undefined {
    this.creds ??= { value: this.opts.credentials(this.registry) };
    return this.creds.value;
  }

  /**
   * `GET /v2/`: check the registry speaks the API and learn its auth scheme.
   * @throws RegistryError when it is unreachable or answers neither 200 nor 401
   */
  ping(): Promise<Auth> {
    this.auth ??= (async () => {
      const url = `${this.base}/v2/`;
      const doing = `pinging registry ${this.registry}`;
      for (let attempt = 0; ; attempt++) {
        let res: Response;
        try {
          res = await fetch(url, { method: 'GET' });
        } catch (err) {
          if (attempt < this.opts.retries) {
            await sleep(this.opts.retryDelayMs * 2 ** attempt);
            continue;
          }
          throw networkError(doing, this.registry, err, { method: 'GET', url });
        }
        const text = await res.text();
        if (res.status === 200) return { kind: 'anonymous' } as Auth;
        if (res.status === 401) {
          const ch = parseChallenge(res.headers.get('www-authenticate'));
          if (ch?.scheme === 'basic') return { kind: 'basic' } as Auth;
          if (ch?.scheme === 'bearer' && ch.params.realm) return { kind: 'bearer', realm: ch.params.realm, service: ch.params.service } as Auth;
          throw httpError(`${doing}: unsupported WWW-Authenticate ${JSON.stringify(res.headers.get('www-authenticate'))}`, this.registry, res, text, { method: 'GET', url });
        }
        if ((res.status >= 500 || res.status === 429) && attempt < this.opts.retries) {
          await sleep(this.opts.retryDelayMs * 2 ** attempt);
          continue;
        }
        throw httpError(doing, this.registry, res, text, { method: 'GET', url });
      }
    })();
    this.auth.catch(() => {
      this.auth = undefined; // a later call may try again
    });
    return this.auth;
  }

  /** A bearer token for `scopes`, from the cache unless `fresh`. */
  private async token(auth: Extract<Auth, { kind: 'bearer' }>, scopes: string[], fresh: boolean): Promise<string> {
    const merged = mergeScopes(scopes);
    const key = merged.join(' ');
    const cached = this.tokens.get(key);
    if (!fresh && cached && cached.expires > Date.now()) return cached.token;
    const u = new URL(auth.realm);
    if (auth.service) u.searchParams.set('service', auth.service);
    for (const s of merged) u.searchParams.append('scope', s);
    const creds = this.credentials();
    const headers: Record<string, string> = {};
    if (creds) headers.authorization = basicAuthorization(creds.username, creds.password);
    const doing = `getting a token for ${key || 'registry access'} from ${u.origin}${u.pathname}`;
    const url = u.toString();
    this.tokenRequests++;
    let res: Response;
    try {
      res = await fetch(url, { headers });
    } catch (err) {
      throw networkError(doing, this.registry, err, { method: 'GET', url });
    }
    const text = await res.text();
    if (res.status !== 200) throw httpError(doing, this.registry, res, text, { method: 'GET', url });
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse(text);
    } catch {
      throw new RegistryError(`${doing}: the answer is not JSON; check the token server`, { status: res.status, method: 'GET', url });
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError(`${doing}: the answer has no token; check the token server`, { status: res.status, method: 'GET', url });
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    // Renew 10 s early so that a token does not run out between check and use.
    this.tokens.set(key, { token, expires: Date.now() + Math.max(ttl - 10, 1) * 1000 });
    return token;
  }

  private async authorization(scopes: string[], fresh = false): Promise<string | undefined> {
    const auth = await this.ping();
    if (auth.kind === 'anonymous') return undefined;
    if (auth.kind === 'basic') {
      const c = this.credentials();
      return c ? basicAuthorization(c.username, c.password) : undefined;
    }
    return `Bearer ${await this.token(auth, scopes, fresh)}`;
  }

  /**
   * One request with auth, a bounded number of retries (5xx, 429, network),
   * and one token refresh after a 401 that carries a Bearer challenge (its
   * scope is added to the request's scopes).
   * @throws RegistryError for a status outside `expect`
   */
  private async request(doing: string, r: Req): Promise<Response> {
    const url = /^https?:\/\//.test(r.url) ? r.url : `${this.base}${r.url}`;
    const retries = r.retries ?? this.opts.retries;
    let scopes = r.scopes;
    let refreshed = false;
    for (let attempt = 0; ; ) {
      const headers: Record<string, string> = { ...(r.headers ?? {}) };
      let authz: string | undefined;
      try {
        authz = await this.authorization(scopes, refreshed);
      } catch (err) {
        if (err instanceof RegistryError) throw new RegistryError(`${doing}: ${err.message}`, { status: err.status, method: err.method, url: err.url, errors: err.errors, cause: err });
        throw err;
      }
      if (authz) headers.authorization = authz;
      const body = r.body ? await r.body() : undefined;
      const init: RequestInit & { duplex?: 'half' } = { method: r.method, headers, redirect: 'follow' };
      if (body !== undefined) {
        init.body = body instanceof Readable ? (body as unknown as AsyncIterable<Uint8Array>) : body;
        if (body instanceof Readable) init.duplex = 'half';
      }
      let res: Response;
      try {
        res = await fetch(url, init);
      } catch (err) {
        if (body instanceof Readable) body.destroy();
        if (attempt < retries) {
          this.opts.log(`${doing}: ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}; retrying`);
          await sleep(this.opts.retryDelayMs * 2 ** attempt++);
          continue;
        }
        throw networkError(doing, this.registry, err, { method: r.method, url });
      }
      if (r.expect.includes(res.status)) {
        // Only GET bodies are read by callers; drain the others so the connection is reused.
        if (r.method !== 'GET') await res.arrayBuffer().catch(() => undefined);
        return res;
      }
      const text = await res.text().catch(() => '');
      if (res.status === 401 && !refreshed) {
        const ch = parseChallenge(res.headers.get('www-authenticate'));
        if (ch?.scheme === 'bearer') {
          if (ch.params.scope) scopes = mergeScopes([...scopes, ch.params.scope]);
          refreshed = true;
          continue;
        }
      }
      if ((res.status >= 500 || res.status === 429) && attempt < retries) {
        this.opts.log(`${doing}: ${r.method} answered ${res.status}; retrying`);
        await sleep(this.opts.retryDelayMs * 2 ** attempt++);
        continue;
      }
      throw httpError(doing, this.registry, res, text, { method: r.method, url });
    }
  }

  private location(res: Response, doing: string): string {
    const loc = res.headers.get('location');
    if (!loc) throw new RegistryError(`${doing}: the registry answered ${res.status} without a Location header; it does not follow the distribution spec`, { status: res.status });
    return new URL(loc, this.base).toString();
  }

  // --- pull ---------------------------------------------------------------------------

  /**
   * Fetch a manifest (image manifest or index) by tag or digest.
   * @throws RegistryError (MANIFEST_UNKNOWN, UNAUTHORIZED, ...) or VriftError when
   *   the bytes do not match the digest asked for or the one the registry names
   */
  async getManifest(repository: string, reference: string, accept: string[] = MANIFEST_ACCEPT): Promise<FetchedManifest> {
    const doing = `fetching manifest ${this.registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const res = await this.request(doing, {
      method: 'GET',
      url: `/v2/${repository}/manifests/${reference}`,
      scopes: [repoScope(repository, 'pull')],
      headers: { accept: accept.join(', ') },
      expect: [200],
    });
    const raw = Buffer.from(await res.arrayBuffer());
    const digest = sha256Digest(raw);
    const named = res.headers.get('docker-content-digest');
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new VriftError(`${doing}: the registry sent content with digest ${digest}; refusing it`);
    }
    if (named && named.startsWith('sha256:') && named !== digest) {
      throw new VriftError(`${doing}: the registry names digest ${named} but the bytes hash to ${digest}; refusing it`);
    }
    let mediaType = (res.headers.get('content-type') ?? '').split(';')[0].trim();
    try {
      const parsed = JSON.parse(raw.toString('utf8')) as { mediaType?: string };
      if (parsed.mediaType) mediaType = parsed.mediaType;
    } catch {
      throw new VriftError(`${doing}: the manifest is not JSON`);
    }
    return { raw, mediaType, digest };
  }

  /**
   * Whether a manifest exists (`HEAD`), and its digest when the registry names it.
   * @returns undefined when the registry answers 404
   */
  async headManifest(repository: string, reference: string): Promise<{ digest?: string; mediaType?: string } | undefined> {
    const doing = `checking manifest ${this.registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const res = await this.request(doing, {
      method: 'HEAD',
      url: `/v2/${repository}/manifests/${reference}`,
      scopes: [repoScope(repository, 'pull')],
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      expect: [200, 404],
    });
    if (res.status === 404) return undefined;
    return { digest: res.headers.get('docker-content-digest') ?? undefined, mediaType: res.headers.get('content-type') ?? undefined };
  }

  /** A stream of a blob's bytes, not verified (see downloadBlob). */
  async openBlob(repository: string, digest: string): Promise<Readable> {
    const res = await this.request(`fetching blob ${digest} from ${this.registry}/${repository}`, {
      method: 'GET',
      url: `/v2/${repository}/blobs/${digest}`,
      scopes: [repoScope(repository, 'pull')],
      expect: [200],
    });
    if (!res.body) throw new RegistryError(`fetching blob ${digest} from ${this.registry}/${repository}: empty answer`, { status: res.status });
    return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  }

  /**
   * Download a blob to `file`, streaming, with digest and size verified; the
   * file appears only when complete (temp path + rename). Retried as a whole
   * on 5xx/network failures.
   * @param size expected bytes (from the descriptor)
   * @throws RegistryError, or VriftError when the bytes do not match
   */
  async downloadBlob(repository: string, digest: string, size: number, file: string): Promise<void> {
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.part-${randomBytes(4).toString('hex')}`);
    for (let attempt = 0; ; attempt++) {
      try {
        const src = await this.openBlob(repository, digest);
        await pipeline(src, verifyingPassThrough(digest, size, `blob ${digest} from ${this.registry}/${repository}`), createWriteStream(tmp));
        await fsp.rename(tmp, file);
        return;
      } catch (err) {
        await fsp.rm(tmp, { force: true });
        const retry = (err instanceof RegistryError && err.temporary) || (!(err instanceof VriftError) && attempt < this.opts.retries);
        if (retry && attempt < this.opts.retries) {
          await sleep(this.opts.retryDelayMs * 2 ** attempt);
          continue;
        }
        if (err instanceof VriftError) throw err;
        throw new RegistryError(`fetching blob ${digest} from ${this.registry}/${repository}: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  // --- push ---------------------------------------------------------------------------

  /**
   * `HEAD` a blob.
   * @returns its size and the digest the registry names, or undefined on 404
   */
  async headBlob(repository: string, digest: string, scopes?: string[]): Promise<{ size: number; digest?: string } | undefined> {
    const res = await this.request(`checking blob ${digest} in ${this.registry}/${repository}`, {
      method: 'HEAD',
      url: `/v2/${repository}/blobs/${digest}`,
      scopes: scopes ?? [repoScope(repository, 'pull')],
      expect: [200, 404],
    });
    if (res.status === 404) return undefined;
    return { size: Number(res.headers.get('content-length') ?? -1), digest: res.headers.get('docker-content-digest') ?? undefined };
  }

  /**
   * Put a blob into `repository`: nothing when `HEAD` finds it, a
   * cross-repository mount when `mountFrom` is given and the registry agrees,
   * otherwise an upload (chunked from `chunkThreshold` bytes on). After a
   * mount or upload, `HEAD` must name the same digest and size.
   * @throws RegistryError when the registry refuses, VriftError when it holds other bytes
   */
  async pushBlob(repository: string, blob: BlobToPush): Promise<BlobPushOutcome> {
    const what = blob.what ? `${blob.what} (${blob.digest})` : `blob ${blob.digest}`;
    const doing = `pushing ${what} to ${this.registry}/${repository}`;
    const pushScopes = [repoScope(repository, 'pull,push')];
    if (await this.headBlob(repository, blob.digest, pushScopes)) return 'existed';
    let outcome: BlobPushOutcome | undefined;
    let location: string | undefined;
    if (blob.mountFrom && blob.mountFrom !== repository) {
      const q = new URLSearchParams({ mount: blob.digest, from: blob.mountFrom });
      const res = await this.request(`${doing}: mounting from ${blob.mountFrom}`, {
        method: 'POST',
        url: `/v2/${repository}/blobs/uploads/?${q}`,
        scopes: [...pushScopes, repoScope(blob.mountFrom, 'pull')],
        expect: [201, 202],
      });
      if (res.status === 201) outcome = 'mounted';
      else location = this.location(res, doing); // not mounted: the registry opened an upload instead
    }
    if (!outcome) {
      const chunked = blob.size >= this.opts.chunkThreshold;
      for (let attempt = 0; ; attempt++) {
        try {
          if (chunked) await this.uploadChunked(repository, blob, doing, location);
          else await this.uploadMonolithic(repository, blob, doing, location);
          break;
        } catch (err) {
          location = undefined; // a failed session is not reused
          if (err instanceof RegistryError && err.temporary && attempt < this.opts.retries) {
            this.opts.log(`${doing}: ${err.message}; retrying the upload`);
            await sleep(this.opts.retryDelayMs * 2 ** attempt);
            continue;
          }
          throw err;
        }
      }
      outcome = chunked ? 'uploaded-chunked' : 'uploaded';
    }
    const head = await this.headBlob(repository, blob.digest, pushScopes);
    if (!head) throw new RegistryError(`${doing}: the registry reports the blob missing right after it was ${outcome}; check the registry's storage`);
    if ((head.digest && head.digest !== blob.digest) || (head.size >= 0 && head.size !== blob.size)) {
      throw new VriftError(`${doing}: the registry holds ${head.digest ?? '?'} (${head.size} bytes) after the push, expected ${blob.digest} (${blob.size} bytes)`);
    }
    return outcome;
  }

  private async startUpload(repository: string, doing: string): Promise<string> {
    const res = await this.request(`${doing}: starting an upload`, {
      method: 'POST',
      url: `/v2/${repository}/blobs/uploads/`,
      scopes: [repoScope(repository, 'pull,push')],
      expect: [202],
    });
    return this.location(res, doing);
  }

  private withDigest(location: string, digest: string): string {
    const u = new URL(location);
    u.searchParams.set('digest', digest);
    return u.toString();
  }

  /** `POST` (unless a session is given), then one `PUT ?digest=` carrying all bytes. */
  private async uploadMonolithic(repository: string, blob: BlobToPush, doing: string, location?: string): Promise<void> {
    const loc = location ?? (await this.startUpload(repository, doing));
    await this.request(`${doing}: uploading ${blob.size} bytes`, {
      method: 'PUT',
      url: this.withDigest(loc, blob.digest),
      scopes: [repoScope(repository, 'pull,push')],
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
      body: blob.open,
      expect: [201],
      retries: 0, // the whole upload is retried with a new session
    });
  }

  /** `POST` (unless a session is given), `PATCH` per chunk with `Content-Range`, then `PUT ?digest=`. */
  private async uploadChunked(repository: string, blob: BlobToPush, doing: string, location?: string): Promise<void> {
    let loc = location ?? (await this.startUpload(repository, doing));
    const src = await blob.open();
    let offset = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const scopes = [repoScope(repository, 'pull,push')];
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const chunk = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      const end = offset + chunk.length - 1;
      const res = await this.request(`${doing}: uploading bytes ${offset}-${end}`, {
        method: 'PATCH',
        url: loc,
        scopes,
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${end}`, 'content-length': String(chunk.length) },
        body: async () => chunk,
        expect: [202],
        retries: 0,
      });
      loc = this.location(res, doing);
      const range = /^(?:bytes=)?0-([0-9]+)$/.exec(res.headers.get('range') ?? '');
      if (range && Number(range[1]) !== end) {
        throw new RegistryError(`${doing}: the registry has bytes 0-${range[1]} after a chunk ending at ${end}`, { status: res.status });
      }
      offset = end + 1;
    };
    try {
      for await (const c of src) {
        let b = c as Buffer;
        while (b.length > 0) {
          const take = Math.min(b.length, this.opts.chunkSize - pendingBytes);
          pending.push(b.subarray(0, take));
          pendingBytes += take;
          b = b.subarray(take);
          if (pendingBytes === this.opts.chunkSize) await flush();
        }
      }
      await flush();
    } finally {
      src.destroy();
    }
    if (offset !== blob.size) throw new VriftError(`${doing}: read ${offset} bytes, the descriptor says ${blob.size}; the source changed`);
    await this.request(`${doing}: completing the upload`, {
      method: 'PUT',
      url: this.withDigest(loc, blob.digest),
      scopes,
      headers: { 'content-length': '0' },
      expect: [201],
      retries: 0,
    });
  }

  /**
   * `PUT` a manifest under a tag or digest, with `Content-Type: mediaType`.
   * @returns the digest of raw; checked against the registry's Docker-Content-Digest
   * @throws RegistryError (MANIFEST_BLOB_UNKNOWN, MANIFEST_INVALID, ...)
   */
  async putManifest(repository: string, reference: string, raw: Buffer, mediaType: string): Promise<string> {
    const digest = sha256Digest(raw);
    const doing = `pushing manifest ${this.registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const res = await this.request(doing, {
      method: 'PUT',
      url: `/v2/${repository}/manifests/${reference}`,
      scopes: [repoScope(repository, 'pull,push')],
      headers: { 'content-type': mediaType },
      body: async () => raw,
      expect: [201],
    });
    const named = res.headers.get('docker-content-digest');
    if (named && named !== digest) {
      throw new VriftError(`${doing}: the registry stored digest ${named} but the manifest is ${digest}`);
    }
    return digest;
  }
}

/** Registry clients by `host[:port]`, so that pings and tokens are shared within a build. */
export class RegistryPool {
  private readonly clients = new Map<string, Registry>();
  constructor(readonly options: RegistryOptions = {}) {}

  /** The client for `registry` (`host[:port]`). */
  get(registry: string): Registry {
    let c = this.clients.get(registry);
    if (!c) {
      c = new Registry(registry, this.options);
      this.clients.set(registry, c);
    }
    return c;
  }
}
