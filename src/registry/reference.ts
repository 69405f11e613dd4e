/**
 * Registry references: `[host[:port]/]repo[:tag][@sha256:hex]` resolved to
 * the registry to talk to, the repository path on it, and the scheme.
 *
 * Defaults follow docker: no host means Docker Hub (`docker.io`, API host
 * `registry-1.docker.io`, one-component names under `library/`). Loopback
 * registries (`localhost`, `127.0.0.0/8`, `[::1]`) and hosts listed in
 * VRIFT_INSECURE_REGISTRIES (comma- or space-separated `host[:port]`) or
 * passed as insecure are spoken to over plain HTTP; all others over HTTPS.
 */
import { VriftError } from '../errors';
import { parseReference } from '../image/reference';

/** A reference resolved to a registry endpoint. */
export interface RegistryRef {
  /** As written. */
  raw: string;
  /** Registry as named, `host[:port]` (`docker.io` for Docker Hub). */
  registry: string;
  /** Host the API is served from (`registry-1.docker.io` for docker.io). */
  apiHost: string;
  /** Repository path on the registry, e.g. `library/debian`, `app/pygments`. */
  repository: string;
  tag?: string;
  digest?: string;
  /** `http` for loopback and insecure registries, `https` otherwise. */
  scheme: 'http' | 'https';
}

/** Registry `host[:port]` names from VRIFT_INSECURE_REGISTRIES. */
export function insecureRegistriesFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.VRIFT_INSECURE_REGISTRIES ?? '').split(/[\s,]+/).filter((s) => s !== '');
}

/** Whether `host[:port]` names a loopback address (`localhost`, 127.0.0.0/8, `[::1]`). */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(0, registry.indexOf(']') + 1) : registry.replace(/:[0-9]+$/, '');
  return host === 'localhost' || host === '[::1]' || /^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/.test(host);
}

/**
 * Whether the first component of a plain reference names a registry host:
 * it contains a `.` or a `:` or is `localhost` (the rule docker and the
 * distribution/reference grammar use). `vrift-test/bookworm-python:latest`
 * names no host; `127.0.0.1:5000/app:1` and `ghcr.io/o/app` do.
 */
export function hasRegistryHost(ref: string): boolean {
  const i = ref.indexOf('/');
  if (i <= 0) return false;
  const first = ref.slice(0, i);
  return /[.:]/.test(first) || first === 'localhost';
}

/**
 * Resolve a reference to its registry.
 * @param insecure extra `host[:port]` names to speak plain HTTP to (VRIFT_INSECURE_REGISTRIES is always read)
 * @throws VriftError when the reference does not parse
 */
export function parseRegistryRef(raw: string, insecure: string[] = [], what = 'image reference'): RegistryRef {
  const r = parseReference(raw, what);
  const slash = r.fullName.indexOf('/');
  const registry = r.fullName.slice(0, slash);
  const repository = r.fullName.slice(slash + 1);
  if (!registry || !repository) throw new VriftError(`parsing ${what} ${raw}: no repository; use host[:port]/repo[:tag]`);
  const apiHost = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
  const plain = isLoopbackRegistry(registry) || [...insecure, ...insecureRegistriesFromEnv()].includes(registry);
  return { raw, registry, apiHost, repository, tag: r.tag, digest: r.digest, scheme: plain ? 'http' : 'https' };
}

/** `host[:port]/repo[:tag|@digest]` of a RegistryRef, with the given tag or digest. */
export function formatRegistryRef(r: Pick<RegistryRef, 'registry' | 'repository'>, tagOrDigest?: string): string {
  const base = `${r.registry}/${r.repository}`;
  if (!tagOrDigest) return base;
  return tagOrDigest.startsWith('sha256:') ? `${base}@${tagOrDigest}` : `${base}:${tagOrDigest}`;
}
