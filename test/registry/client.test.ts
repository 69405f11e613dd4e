/**
 * The OCI distribution client (src/registry) and the registry image
 * source/sink (src/image/remote*.ts) against a real `docker-registry` on
 * 127.0.0.1: anonymous, htpasswd basic auth and token auth (a token server
 * in this file), credentials from a Docker config.json and a credential
 * helper, cross-repository mounts, chunked uploads, retries through a
 * fault-injecting proxy, typed errors, and a multi-platform index (checked
 * with skopeo). Images here are tiny synthetic ones; test/registry/build.test.ts
 * covers the CLI with real images and the engine.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { Registry, RegistryPool, type RegistryOptions } from '../../src/registry/client';
import { credentialsFor } from '../../src/registry/credentials';
import { RegistryError } from '../../src/registry/errors';
import { parseChallenge, mergeScopes } from '../../src/registry/auth';
import { parseRegistryRef, hasRegistryHost } from '../../src/registry/reference';
import { readRemoteImage } from '../../src/image/remote';
import { pushImage, pushIndex } from '../../src/image/remoteWrite';
import { readOciLayoutPath } from '../../src/image/ociLayout';
import { hashStream } from '../../src/image/digest';
import { dockerConfig, startProxy, startRegistry, startTokenServer, tinyImage, type TestProxy, type TestRegistry, type TokenServer } from './helpers';

jest.setTimeout(120_000);

const execFileAsync = promisify(execFile);

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobOf = (data: Buffer, extra: { mountFrom?: string } = {}) => ({ digest: sha(data), size: data.length, open: async () => Readable.from([data]), ...extra });
const fast: RegistryOptions = { retryDelayMs: 10, credentials: () => undefined };

let work: string;
let reg: TestRegistry;
let proxy: TestProxy;

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'vrift-registry-test-'));
  reg = startRegistry();
  proxy = await startProxy(reg.host);
});

afterAll(async () => {
  await proxy?.close();
  reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

beforeEach(() => {
  proxy.seen.length = 0;
  proxy.faults.length = 0;
});

describe('references', () => {
  test('registry host rule, schemes and Docker Hub defaults', () => {
    expect(hasRegistryHost('vrift-test/bookworm-python:latest')).toBe(false);
    expect(hasRegistryHost('127.0.0.1:5000/app:1')).toBe(true);
    expect(hasRegistryHost('localhost/app')).toBe(true);
    expect(hasRegistryHost('ghcr.io/o/app')).toBe(true);
    expect(parseRegistryRef('127.0.0.1:5000/a/b:1')).toMatchObject({ registry: '127.0.0.1:5000', repository: 'a/b', tag: '1', scheme: 'http' });
    expect(parseRegistryRef('localhost:5000/a@sha256:' + 'a'.repeat(64))).toMatchObject({ repository: 'a', digest: 'sha256:' + 'a'.repeat(64), tag: undefined, scheme: 'http' });
    expect(parseRegistryRef('debian')).toMatchObject({ registry: 'docker.io', apiHost: 'registry-1.docker.io', repository: 'library/debian', tag: 'latest', scheme: 'https' });
    expect(parseRegistryRef('reg.example.com:5000/x')).toMatchObject({ scheme: 'https' });
    expect(parseRegistryRef('reg.example.com:5000/x', ['reg.example.com:5000'])).toMatchObject({ scheme: 'http' });
  });

  test('WWW-Authenticate parsing and scope merging', () => {
    expect(parseChallenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'reg', scope: 'repository:a/b:pull,push' },
    });
    expect(parseChallenge('Basic realm="x"')).toEqual({ scheme: 'basic', params: { realm: 'x' } });
    expect(mergeScopes(['repository:a:push', 'repository:b:pull', 'repository:a:pull'])).toEqual(['repository:a:pull,push', 'repository:b:pull']);
  });
});

describe('anonymous registry', () => {
  test('image push and pull round trip: manifest, config and layer bytes; skopeo reads it', async () => {
    const { image, layerBytes, rawConfig } = await tinyImage('round trip');
    const pool = new RegistryPool(fast);
    const ref = parseRegistryRef(`${reg.host}/tiny/roundtrip:1`);
    const pushed = await pushImage(image, ref, { pool, tmpDir: work });
    expect(pushed.layers.map((l) => l.outcome)).toEqual(['uploaded']);
    expect(pushed.reference).toBe(`${reg.host}/tiny/roundtrip:1`);

    const again = await pushImage(image, ref, { pool, tmpDir: work });
    expect(again.layers.map((l) => l.outcome)).toEqual(['existed']);
    expect(again.manifestDigest).toBe(pushed.manifestDigest);

    const dl = mkdtempSync(path.join(work, 'dl-'));
    const r = await readRemoteImage(ref, { pool, tmpDir: dl });
    expect(r.manifestDigest).toBe(pushed.manifestDigest);
    expect(await r.image.rawConfig()).toEqual(rawConfig);
    const [layer] = await r.image.layers();
    expect(await hashStream(await layer.open())).toEqual({ digest: sha(layerBytes), size: layerBytes.length });

    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${ref.raw}`], { encoding: 'utf8' }));
    expect(inspect.Digest).toBe(pushed.manifestDigest);
    expect(inspect.Layers).toEqual([sha(layerBytes)]);
    const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref.raw}`], { encoding: 'utf8' }));
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(raw.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
  });

  test('unknown tag and repository: RegistryError with the registry error code', async () => {
    const r = new Registry(reg.host, fast);
    const err = await r.getManifest('tiny/nothing-here', 'nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    const e = err as RegistryError;
    expect(e.status).toBe(404);
    expect(e.errors.map((x) => x.code)).toContain(e.hasCode('NAME_UNKNOWN') ? 'NAME_UNKNOWN' : 'MANIFEST_UNKNOWN');
    expect(e.message).toMatch(new RegExp(`^fetching manifest ${reg.host}/tiny/nothing-here:nope: GET http://${reg.host}/v2/tiny/nothing-here/manifests/nope answered 404: (NAME|MANIFEST)_UNKNOWN`));
    expect(e.message).toMatch(/; check the repository, tag or digest/);
  });

  test('a blob whose bytes do not match the digest is refused by the registry (DIGEST_INVALID)', async () => {
    const r = new Registry(reg.host, { ...fast, retries: 0 });
    const data = randomBytes(300);
    const err = await r.pushBlob('tiny/bad', { digest: sha(Buffer.from('other')), size: data.length, open: async () => Readable.from([data]) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).hasCode('DIGEST_INVALID') || (err as RegistryError).hasCode('SIZE_INVALID')).toBe(true);
  });

  test('chunked upload: PATCH per chunk with Content-Range, then PUT ?digest=; bytes read back equal', async () => {
    const r = new Registry(proxy.host, { ...fast, chunkThreshold: 1000, chunkSize: 4096 });
    const data = randomBytes(10_000);
    expect(await r.pushBlob('tiny/chunked', blobOf(data))).toBe('uploaded-chunked');
    const patches = proxy.seen.filter((s) => s.method === 'PATCH');
    expect(patches.map((p) => p.headers['content-range'])).toEqual(['0-4095', '4096-8191', '8192-9999']);
    expect(patches.every((p) => p.status === 202)).toBe(true);
    expect(proxy.seen.filter((s) => s.method === 'PUT' && /[?&]digest=sha256/.test(s.url)).map((s) => s.status)).toEqual([201]);
    const file = path.join(work, 'chunked.bin');
    await r.downloadBlob('tiny/chunked', sha(data), data.length, file);
    expect(await hashStream(Readable.from([readFileSync(file)]))).toEqual({ digest: sha(data), size: data.length });

    // below the threshold: one monolithic PUT, no PATCH
    proxy.seen.length = 0;
    expect(await r.pushBlob('tiny/chunked', blobOf(randomBytes(999)))).toBe('uploaded');
    expect(proxy.seen.filter((s) => s.method === 'PATCH')).toHaveLength(0);
  });

  test('cross-repository mount: POST ?mount=&from= answers 201 and no bytes are uploaded; a source without the blob falls back to upload', async () => {
    const r = new Registry(proxy.host, fast);
    const data = randomBytes(5000);
    expect(await r.pushBlob('mount/src', blobOf(data))).toBe('uploaded');
    proxy.seen.length = 0;
    expect(await r.pushBlob('mount/dst', blobOf(data, { mountFrom: 'mount/src' }))).toBe('mounted');
    const posts = proxy.seen.filter((s) => s.method === 'POST');
    expect(posts).toHaveLength(1);
    expect(posts[0].url).toMatch(/^\/v2\/mount\/dst\/blobs\/uploads\/\?mount=sha256%3A[0-9a-f]{64}&from=mount%2Fsrc$/);
    expect(posts[0].status).toBe(201);
    expect(proxy.seen.filter((s) => s.method === 'PUT' || s.method === 'PATCH')).toHaveLength(0);
    expect(await r.headBlob('mount/dst', sha(data))).toEqual({ size: 5000, digest: sha(data) });

    proxy.seen.length = 0;
    const other = randomBytes(700);
    expect(await r.pushBlob('mount/dst2', blobOf(other, { mountFrom: 'mount/src' }))).toBe('uploaded');
    expect(proxy.seen.find((s) => s.method === 'POST')?.status).toBe(202);
    expect(proxy.seen.filter((s) => s.method === 'POST')).toHaveLength(1); // the session the mount opened is used
  });

  test('retries: a 500 on the blob PUT, a 503 on the manifest GET and a reset connection are retried; with retries 0 the 500 is the error', async () => {
    const r = new Registry(proxy.host, fast);
    const data = randomBytes(2000);
    proxy.faults.push({ match: (m, u) => m === 'PUT' && u.includes('/blobs/uploads/'), status: 500 });
    expect(await r.pushBlob('retry/a', blobOf(data))).toBe('uploaded');
    expect(proxy.seen.filter((s) => s.injected)).toHaveLength(1);
    expect(proxy.seen.filter((s) => s.method === 'PUT').map((s) => s.status)).toEqual([500, 201]);

    const { image } = await tinyImage('retry');
    const ref = parseRegistryRef(`${proxy.host}/retry/img:1`);
    const pool = new RegistryPool(fast);
    await pushImage(image, ref, { pool, tmpDir: work });
    proxy.seen.length = 0;
    proxy.faults.push({ match: (m, u) => m === 'GET' && u.includes('/manifests/'), status: 503 });
    proxy.faults.push({ match: (m, u) => m === 'GET' && u.includes('/blobs/'), status: 'reset' });
    const got = await readRemoteImage(ref, { pool: new RegistryPool(fast), tmpDir: mkdtempSync(path.join(work, 'dl-')) });
    expect(proxy.seen.filter((s) => s.injected).map((s) => s.injected)).toEqual(['status', 'reset']);
    expect((await got.image.config()).architecture).toBe('amd64');

    proxy.seen.length = 0;
    proxy.faults.push({ match: (m, u) => m === 'PUT' && u.includes('/blobs/uploads/'), status: 500 });
    const once = new Registry(proxy.host, { ...fast, retries: 0 });
    const err = await once.pushBlob('retry/b', blobOf(randomBytes(100))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(500);
    expect((err as RegistryError).message).toMatch(/^pushing blob sha256:[0-9a-f]{64} to 127\.0\.0\.1:[0-9]+\/retry\/b: uploading 100 bytes: PUT http:\/\/127\.0\.0\.1:[0-9]+\/v2\/retry\/b\/blobs\/uploads\/[^ ]* answered 500: UNKNOWN \(injected by the test proxy\); the registry .* failed; retry later/);
  });

  test('retries are bounded: a registry that always fails gives up after retries + 1 attempts', async () => {
    proxy.faults.push({ match: (m, u) => m === 'GET' && u.includes('/manifests/'), status: 502, times: 100 });
    const r = new Registry(proxy.host, { ...fast, retries: 2 });
    await expect(r.getManifest('retry/img', '1')).rejects.toMatchObject({ status: 502 });
    expect(proxy.seen.filter((s) => s.injected)).toHaveLength(3);
  });

  test('a registry that is not there: network error with what to do', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r)); // nothing listens there now
    const r = new Registry(`127.0.0.1:${port}`, { ...fast, retries: 1 });
    await expect(r.getManifest('x', '1')).rejects.toThrow(new RegExp(`^fetching manifest 127\\.0\\.0\\.1:${port}/x:1: pinging registry 127\\.0\\.0\\.1:${port}: GET http://127\\.0\\.0\\.1:${port}/v2/ failed: ECONNREFUSED; check that 127\\.0\\.0\\.1:${port} is up and reachable$`));
  });

  test('multi-platform index: pushed with the client, selected by platform, read by skopeo (--multi-arch all)', async () => {
    const amd = await tinyImage('amd64 image');
    const arm = await tinyImage('arm64 image', { os: 'linux', architecture: 'arm64' });
    const pool = new RegistryPool(fast);
    const ref = parseRegistryRef(`${reg.host}/multi/tiny:1`);
    const pushed = await pushIndex([{ image: arm.image, platform: { os: 'linux', architecture: 'arm64' } }, { image: amd.image, platform: { os: 'linux', architecture: 'amd64' } }], ref, { pool, tmpDir: work });

    const dl = mkdtempSync(path.join(work, 'dl-'));
    const a = await readRemoteImage(ref, { pool, tmpDir: dl, platform: 'linux/arm64' });
    expect(a.indexDigest).toBe(pushed.indexDigest);
    expect(a.platform).toBe('linux/arm64');
    expect(await a.image.rawConfig()).toEqual(arm.rawConfig);
    const d = await readRemoteImage(ref, { pool, tmpDir: dl }); // default: the host's platform
    expect((await d.image.config()).architecture).toBe(process.arch === 'arm64' ? 'arm64' : 'amd64');
    await expect(readRemoteImage(ref, { pool, tmpDir: dl, platform: 'linux/s390x' })).rejects.toThrow(/no manifest for platform linux\/s390x; it has linux\/arm64, linux\/amd64 \(choose one with --platform\)/);

    const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref.raw}`], { encoding: 'utf8' }));
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)).toEqual(['arm64', 'amd64']);
    const layout = path.join(work, 'multi-layout');
    execFileSync('skopeo', ['copy', '--multi-arch', 'all', '--src-tls-verify=false', `docker://${ref.raw}`, `oci:${layout}:multi`], { stdio: 'ignore' });
    const fromLayout = await readOciLayoutPath(layout, { ref: 'multi', platform: 'linux/arm64' });
    expect(await fromLayout.rawConfig()).toEqual(arm.rawConfig);
  });
});

describe('basic auth (htpasswd)', () => {
  let auth: TestRegistry;
  beforeAll(() => {
    auth = startRegistry({ htpasswd: { user: 'alice', password: 's3cret' } });
  });
  afterAll(() => auth?.stop());

  test('credentials from a Docker config.json (auth base64 and username/password) push and pull; none or wrong ones give 401 with what to do', async () => {
    const { image } = await tinyImage('basic');
    const ref = parseRegistryRef(`${auth.host}/private/tiny:1`);
    const cfgDir = mkdtempSync(path.join(work, 'docker-config-'));
    dockerConfig(cfgDir, { [auth.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } });
    expect(credentialsFor(auth.host, { DOCKER_CONFIG: cfgDir })).toEqual({ username: 'alice', password: 's3cret' });
    const pool = new RegistryPool({ ...fast, credentials: (r) => credentialsFor(r, { DOCKER_CONFIG: cfgDir }) });
    const pushed = await pushImage(image, ref, { pool, tmpDir: work });
    const got = await readRemoteImage(ref, { pool, tmpDir: mkdtempSync(path.join(work, 'dl-')) });
    expect(got.manifestDigest).toBe(pushed.manifestDigest);

    const cfg2 = mkdtempSync(path.join(work, 'docker-config-'));
    dockerConfig(cfg2, { [`http://${auth.host}/v2/`]: { username: 'alice', password: 's3cret' } });
    expect(credentialsFor(auth.host, { DOCKER_CONFIG: cfg2 })).toEqual({ username: 'alice', password: 's3cret' });

    const anon = new Registry(auth.host, fast);
    const err = (await anon.getManifest('private/tiny', '1').catch((e: unknown) => e)) as RegistryError;
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.status).toBe(401);
    expect(err.hasCode('UNAUTHORIZED')).toBe(true);
    expect(err.message).toMatch(new RegExp(`answered 401: UNAUTHORIZED.*; log in to ${auth.host} \\(\`docker login ${auth.host}\` writes ~/.docker/config.json`));
    const wrong = new Registry(auth.host, { ...fast, credentials: () => ({ username: 'alice', password: 'nope' }) });
    await expect(wrong.getManifest('private/tiny', '1')).rejects.toMatchObject({ status: 401 });
    // skopeo with the same credentials sees the same manifest
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', '--creds', 'alice:s3cret', `docker://${ref.raw}`], { encoding: 'utf8' }));
    expect(inspect.Digest).toBe(pushed.manifestDigest);
  });

  test('a credential helper (docker-credential-<name> get) named in credHelpers is used', async () => {
    const bin = mkdtempSync(path.join(work, 'bin-'));
    const helper = path.join(bin, 'docker-credential-vrifttest');
    writeFileSync(helper, `#!/bin/sh\nread server\n[ "$server" = "${auth.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\necho '{"ServerURL":"${auth.host}","Username":"alice","Secret":"s3cret"}'\n`);
    chmodSync(helper, 0o755);
    const cfgDir = mkdtempSync(path.join(work, 'docker-config-'));
    dockerConfig(cfgDir, {}, { credHelpers: { [auth.host]: 'vrifttest' } });
    const env = { DOCKER_CONFIG: cfgDir, PATH: `${bin}:${process.env.PATH}` };
    expect(credentialsFor(auth.host, env)).toEqual({ username: 'alice', password: 's3cret' });
    expect(credentialsFor('other.example:5000', env)).toBeUndefined();
    const r = new Registry(auth.host, { ...fast, credentials: (h) => credentialsFor(h, env) });
    expect((await r.getManifest('private/tiny', '1')).mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });
});

describe('token auth (bearer flow with a token server)', () => {
  let tok: TokenServer;
  let treg: TestRegistry;
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(work, 'token-'));
    mkdirSync(dir, { recursive: true });
    tok = await startTokenServer(dir, 'bob', 'hunter2');
    treg = startRegistry({ token: { realm: tok.realm, cert: tok.cert, service: tok.service, issuer: tok.issuer } });
  });
  afterAll(async () => {
    treg?.stop();
    await tok?.close();
  });

  test('push, mount and pull with tokens scoped per repository, cached per scope; without credentials the token server refuses', async () => {
    const creds = { username: 'bob', password: 'hunter2' };
    const pool = new RegistryPool({ ...fast, credentials: () => creds });
    const { image, layerBytes } = await tinyImage('token');
    const ref = parseRegistryRef(`${treg.host}/team/app:1`);
    const pushed = await pushImage(image, ref, { pool, tmpDir: work });
    expect(tok.requests.length).toBeGreaterThan(0);
    expect(tok.requests.every((r) => r.authorized)).toBe(true);
    expect(tok.requests.map((r) => r.scopes.join(' '))).toContain('repository:team/app:pull,push');

    const client = pool.get(treg.host);
    const before = client.tokenRequests;
    await client.getManifest('team/app', '1');
    await client.getManifest('team/app', '1');
    await client.headBlob('team/app', sha(layerBytes));
    expect(client.tokenRequests - before).toBe(1); // one token for repository:team/app:pull, then cached

    tok.requests.length = 0;
    expect(await client.pushBlob('team/other', { ...blobOf(layerBytes), mountFrom: 'team/app' })).toBe('mounted');
    expect(tok.requests.map((r) => r.scopes.join(' '))).toContain('repository:team/app:pull repository:team/other:pull,push');

    const got = await readRemoteImage(ref, { pool, tmpDir: mkdtempSync(path.join(work, 'dl-')) });
    expect(got.manifestDigest).toBe(pushed.manifestDigest);

    const anon = new Registry(treg.host, fast);
    await expect(anon.getManifest('team/app', '1')).rejects.toThrow(/^fetching manifest .*: getting a token for repository:team\/app:pull from http:\/\/127\.0\.0\.1:[0-9]+\/token: GET .* answered 401: UNAUTHORIZED \(bad credentials\); log in to/);
    // async: the token server runs in this process, so a synchronous child would deadlock it
    const inspect = JSON.parse((await execFileAsync('skopeo', ['inspect', '--tls-verify=false', '--creds', 'bob:hunter2', `docker://${ref.raw}`], { encoding: 'utf8' })).stdout);
    expect(inspect.Digest).toBe(pushed.manifestDigest);
  });
});
