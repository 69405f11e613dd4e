/**
 * Throwaway registries for tests: a real `docker-registry` (Debian package,
 * distribution 2.8) on a free 127.0.0.1 port started through
 * scripts/registry.sh (anonymous, htpasswd basic auth, or token auth), a tiny
 * token server (RS256 JWTs with the signing certificate in `x5c`, which the
 * registry checks against its rootcertbundle), and a logging, fault-injecting
 * HTTP proxy in front of a registry.
 */
import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createSign, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import { ROOT } from '../e2e/helpers';
import { makeTar } from '../image/helpers';
import { layerFromOpener } from '../../src/image/layer';
import { imageFromParts } from '../../src/image/partial';
import { canonicalJsonBytes } from '../../src/image/json';
import type { Image, ImageConfig } from '../../src/image/types';

export const REGISTRY_SH = path.join(ROOT, 'scripts', 'registry.sh');

/** A registry started by scripts/registry.sh. */
export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  dir: string;
  stop(): void;
}

/** Start a docker-registry on a free loopback port. */
export function startRegistry(opts: { htpasswd?: { user: string; password: string }; token?: { realm: string; cert: string; service: string; issuer: string } } = {}): TestRegistry {
  const args = ['start'];
  if (opts.htpasswd) args.push('--htpasswd', `${opts.htpasswd.user}:${opts.htpasswd.password}`);
  if (opts.token) args.push('--token', opts.token.realm, '--token-cert', opts.token.cert, '--token-service', opts.token.service, '--token-issuer', opts.token.issuer);
  const out = execFileSync('bash', [REGISTRY_SH, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000 });
  const host = /VRIFT_REGISTRY=(\S+)/.exec(out)?.[1];
  const dir = /VRIFT_REGISTRY_DIR=(\S+)/.exec(out)?.[1];
  if (!host || !dir) throw new Error(`scripts/registry.sh start printed no address: ${out}`);
  return { host, port: Number(host.split(':')[1]), dir, stop: () => execFileSync('bash', [REGISTRY_SH, 'stop', dir], { stdio: 'ignore' }) };
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });
}

/** One request seen by the proxy. */
export interface Seen {
  method: string;
  url: string;
  status: number;
  headers: http.IncomingHttpHeaders;
  injected?: 'status' | 'reset';
}

/** A fault to inject once (or `times` times) into matching requests. */
export interface Fault {
  match: (method: string, url: string) => boolean;
  /** Answer this status (with a distribution-spec error body) instead of forwarding; 'reset' destroys the socket. */
  status: number | 'reset';
  times?: number;
}

/** A logging HTTP proxy on 127.0.0.1 in front of `target` (host:port), with injectable faults. */
export interface TestProxy {
  host: string;
  seen: Seen[];
  faults: Fault[];
  close(): Promise<void>;
}

/**
 * Start a proxy that forwards every request unchanged (Host header included,
 * so the registry's Location headers point back at the proxy) and records it.
 */
export async function startProxy(target: string): Promise<TestProxy> {
  const [thost, tport] = target.split(':');
  const seen: Seen[] = [];
  const faults: Fault[] = [];
  const server = http.createServer((req, res) => {
    const f = faults.find((x) => (x.times ?? 1) > 0 && x.match(req.method ?? '', req.url ?? ''));
    if (f) {
      f.times = (f.times ?? 1) - 1;
      seen.push({ method: req.method ?? '', url: req.url ?? '', status: f.status === 'reset' ? 0 : f.status, headers: req.headers, injected: f.status === 'reset' ? 'reset' : 'status' });
      req.resume();
      if (f.status === 'reset') {
        req.socket.destroy();
        return;
      }
      const body = JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'injected by the test proxy' }] });
      res.writeHead(f.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const up = http.request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers }, (ures) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', status: ures.statusCode ?? 0, headers: req.headers });
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      ures.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  const port = await listen(server);
  return {
    host: `127.0.0.1:${port}`,
    seen,
    faults,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** A token server for the registry's `auth.token` config. */
export interface TokenServer {
  realm: string;
  cert: string;
  service: string;
  issuer: string;
  /** Every token request: the scopes asked for and whether it carried valid credentials. */
  requests: { scopes: string[]; authorized: boolean }[];
  close(): Promise<void>;
}

/**
 * Start a token server on 127.0.0.1 that grants the requested scopes to
 * `user:password` (basic auth on the token request) and refuses others.
 * The signing key and certificate are made with openssl in `dir`.
 */
export async function startTokenServer(dir: string, user: string, password: string): Promise<TokenServer> {
  const key = path.join(dir, 'token.key');
  const cert = path.join(dir, 'token.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=vrift-test-token-issuer'], { stdio: 'ignore' });
  const privateKey = createPrivateKey(readFileSync(key));
  const der = new X509Certificate(readFileSync(cert)).raw;
  const service = 'vrift-test-registry';
  const issuer = 'vrift-test-issuer';
  const requests: TokenServer['requests'] = [];
  const expected = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const scopes = u.searchParams.getAll('scope');
    const authorized = req.headers.authorization === expected;
    requests.push({ scopes, authorized });
    if (!authorized) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    const access = scopes.flatMap((s) => s.split(' ')).map((s) => {
      const [type, ...rest] = s.split(':');
      const actions = rest.pop() ?? '';
      return { type, name: rest.join(':'), actions: actions.split(',').filter(Boolean) };
    });
    const header = { typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] };
    const claims = { iss: issuer, sub: user, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(privateKey);
    const token = `${input}.${b64url(sig)}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() }));
  });
  const port = await listen(server);
  return { realm: `http://127.0.0.1:${port}/token`, cert, service, issuer, requests, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** Write a Docker client config.json with an `auths` entry; returns its directory (for DOCKER_CONFIG). */
export function dockerConfig(dir: string, auths: Record<string, { auth?: string; username?: string; password?: string }>, extra: Record<string, unknown> = {}): string {
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ auths, ...extra }));
  return dir;
}

/**
 * A small synthetic single-layer image (gzip layer, OCI media types) for
 * `platform`: its file /hello.txt says `text`. `extraLayers` are appended
 * after it (e.g. a real base's layers to make a fake second platform).
 */
export async function tinyImage(text: string, platform: { os: string; architecture: string } = { os: 'linux', architecture: 'amd64' }): Promise<{ image: Image; layerBytes: Buffer; rawConfig: Buffer }> {
  const tarBytes = await makeTar([{ name: 'hello.txt', body: text }, { name: 'bin', type: 'directory' }]);
  const gz = gzipSync(tarBytes);
  const diffID = `sha256:${createHash('sha256').update(tarBytes).digest('hex')}`;
  const config: ImageConfig = { architecture: platform.architecture, os: platform.os, config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [diffID] }, history: [{ created_by: `test ${text}` }] };
  const rawConfig = canonicalJsonBytes(config);
  const layer = layerFromOpener({ what: `tiny layer ${text}`, open: async () => Readable.from([gz]), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID });
  return { image: imageFromParts(rawConfig, config, [layer]), layerBytes: gz, rawConfig };
}

/** An image that is `base` with another architecture in its config (same layers): a stand-in second platform. */
export async function withArchitecture(base: Image, architecture: string): Promise<Image> {
  const config = JSON.parse((await base.rawConfig()).toString('utf8')) as ImageConfig;
  config.architecture = architecture;
  return imageFromParts(canonicalJsonBytes(config), config, await base.layers());
}
