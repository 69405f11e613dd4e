/**
 * Registry credentials from the Docker client configuration, as `docker login`
 * writes it: `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).
 *
 * Looked up in this order for a registry `host[:port]`:
 * 1. `credHelpers[host]`, then `credsStore`: `docker-credential-<helper> get`
 *    with the server URL on stdin, answering `{"Username","Secret"}`
 *    (docker-credential-helpers protocol); a helper that is missing or knows
 *    nothing means "no credentials", not an error;
 * 2. `auths[key]` where key is `host[:port]` or `http(s)://host[:port][/...]`
 *    (Docker Hub: also `https://index.docker.io/v1/`), with `auth` =
 *    base64("user:password") or `username`/`password`; `identitytoken` is an
 *    OAuth refresh token, not supported here (ignored).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VriftError } from '../errors';

/** A user name and password (or token) for basic auth and token requests. */
export interface Credentials {
  username: string;
  password: string;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** Path of the Docker client config file (DOCKER_CONFIG honoured). */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.DOCKER_CONFIG || path.join(os.homedir(), '.docker'), 'config.json');
}

function readConfig(file: string): DockerConfigFile | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new VriftError(`reading registry credentials: ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text) as DockerConfigFile;
  } catch (err) {
    throw new VriftError(`reading registry credentials: ${file} is not JSON (${(err as Error).message}); fix or remove it`, { cause: err });
  }
}

/** Registry name of an `auths` key: `https://host:port/v1/` -> `host:port`. */
function keyHost(key: string): string {
  const h = key.replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '');
  return h === 'index.docker.io' || h === 'registry-1.docker.io' ? 'docker.io' : h;
}

function fromHelper(helper: string, registry: string, env: NodeJS.ProcessEnv): Credentials | undefined {
  const server = registry === 'docker.io' ? 'https://index.docker.io/v1/' : registry;
  const r = spawnSync(`docker-credential-${helper}`, ['get'], { input: server, encoding: 'utf8', timeout: 30_000, env });
  if (r.error || r.status !== 0) return undefined; // missing helper or "credentials not found"
  try {
    const c = JSON.parse(r.stdout) as { Username?: string; Secret?: string };
    if (typeof c.Secret === 'string' && c.Secret !== '') return { username: c.Username ?? '', password: c.Secret };
  } catch {
    return undefined;
  }
  return undefined;
}

/**
 * Credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub)
 * from the Docker client config, or undefined when there are none.
 * @throws VriftError when the config file exists but is unreadable or malformed
 */
export function credentialsFor(registry: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const file = dockerConfigPath(env);
  const cfg = readConfig(file);
  if (!cfg) return undefined;
  const helper = cfg.credHelpers?.[registry] ?? cfg.credsStore;
  if (helper) {
    const c = fromHelper(helper, registry, env);
    if (c) return c;
  }
  for (const [key, entry] of Object.entries(cfg.auths ?? {})) {
    if (keyHost(key) !== registry || !entry) continue;
    if (entry.auth) {
      const plain = Buffer.from(entry.auth, 'base64').toString('utf8');
      const i = plain.indexOf(':');
      if (i < 0) throw new VriftError(`reading registry credentials: ${file}: auths["${key}"].auth is not base64 of user:password; run \`docker login ${registry}\` again`);
      return { username: plain.slice(0, i), password: plain.slice(i + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  }
  return undefined;
}
