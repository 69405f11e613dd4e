/**
 * `vrift build` with registries, end to end against a real `docker-registry`
 * on 127.0.0.1 and the real engine: a base pushed to the registry, built on
 * with `--base <registry ref>` and pushed with `--push` (base layer mounted,
 * never downloaded; tree layer uploaded in chunks under a low threshold),
 * read by `skopeo inspect` / `skopeo copy`, pulled and run by the engine,
 * pulled back by vrift (same config digest as a build on the engine's base),
 * retries through a fault-injecting proxy, a multi-platform index with
 * `--platform`, and basic and token auth through the CLI.
 *
 * CLI and skopeo calls are asynchronous children: the proxy and the token
 * server run in this process and must keep answering meanwhile.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { readDaemonImage, dockerClient } from '../../src/image/daemon';
import { readOciLayoutPath } from '../../src/image/ociLayout';
import { readRemoteImage } from '../../src/image/remote';
import { pushImage, pushIndex, type PushResult } from '../../src/image/remoteWrite';
import { RegistryPool } from '../../src/registry/client';
import { parseRegistryRef } from '../../src/registry/reference';
import { BASE_IMAGE, CLI, requireEnvironment } from '../e2e/helpers';
import { dockerConfig, startProxy, startRegistry, startTokenServer, tinyImage, withArchitecture, type TestProxy, type TestRegistry, type TokenServer } from './helpers';

jest.setTimeout(300_000);

const execFileAsync = promisify(execFile);

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run the real CLI without blocking this process's servers. */
function vrift(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete e.SOURCE_DATE_EPOCH;
    const p = spawn(process.execPath, [CLI, ...args], { env: e });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    p.on('error', reject);
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

async function run(cmd: string, args: string[]): Promise<string> {
  return (await execFileAsync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
}

interface Summary {
  configDigest: string;
  manifestDigest: string;
  blobDigest: string;
  layers: { role: string; digest: string; diffID: string; size: number }[];
  pushed?: PushResult;
}

const TAG = `vrift-registry-e2e/hello:${process.pid}`;
let work: string;
let tree: string;
let reg: TestRegistry;
let proxy: TestProxy;
let basePush: PushResult;
let app: Summary;
let noCfg: string;
const pulledTags: string[] = [];

beforeAll(async () => {
  requireEnvironment();
  work = mkdtempSync(path.join(os.tmpdir(), 'vrift-registry-build-'));
  noCfg = mkdtempSync(path.join(work, 'no-docker-config-'));
  tree = path.join(work, 'tree');
  mkdirSync(path.join(tree, 'vrift_hello', 'data'), { recursive: true });
  writeFileSync(path.join(tree, 'vrift_hello', '__init__.py'), 'MSG = "hello from a registry"\n');
  // incompressible bytes, so the tree layer is well above the chunk threshold used below
  for (let i = 0; i < 8; i++) writeFileSync(path.join(tree, 'vrift_hello', 'data', `blob${i}.bin`), randomBytes(32 * 1024));
  reg = startRegistry();
  proxy = await startProxy(reg.host);
  // The base, pushed once with the library (the engine's uncompressed layer is gzipped for the push).
  const docker = dockerClient();
  const base = await readDaemonImage(docker, BASE_IMAGE, work);
  try {
    basePush = await pushImage(base.image, parseRegistryRef(`${reg.host}/base/bookworm-python:1`), { pool: new RegistryPool(), tmpDir: work });
  } finally {
    await base.dispose();
  }
});

afterAll(async () => {
  for (const t of pulledTags) await run('docker', ['rmi', '-f', t]).catch(() => undefined);
  await proxy?.close();
  reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

beforeEach(() => {
  if (proxy) {
    proxy.seen.length = 0;
    proxy.faults.length = 0;
  }
});

describe('vrift build --push / --base <registry ref>', () => {
  test('build on a registry base and push: base layer mounted (not uploaded again), tree layer uploaded in chunks, config digest kept', async () => {
    const r = await vrift(['build', '--base', `${proxy.host}/base/bookworm-python:1`, '--add', `${tree}:/vrift/py`, '--tag', `${proxy.host}/app/hello:1`, '--push', '--json'], {
      VRIFT_REGISTRY_CHUNK_THRESHOLD: '65536',
      DOCKER_CONFIG: noCfg,
    });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    app = JSON.parse(r.stdout) as Summary;
    const pushed = app.pushed!;
    expect(pushed.reference).toBe(`${proxy.host}/app/hello:1`);
    expect(pushed.configDigest).toBe(app.configDigest);
    expect(pushed.layers.map((l) => l.outcome)).toEqual(['mounted', 'uploaded', 'uploaded-chunked']);
    expect(pushed.layers[0].digest).toBe(basePush.layers[0].digest);
    expect(pushed.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip')).toBe(true);
    // vrift's own layers are pushed byte for byte as built
    expect(pushed.layers.slice(1).map((l) => l.digest)).toEqual(app.layers.slice(1).map((l) => l.digest));

    // (the base layer may be read - the build looks for a musl loader in it - but is never sent back)
    expect(proxy.seen.filter((s) => (s.method === 'PUT' || s.method === 'PATCH') && s.url.startsWith('/v2/app/hello/') && s.url.includes(encodeURIComponent(basePush.layers[0].digest)))).toEqual([]);
    expect(proxy.seen.filter((s) => s.method === 'PATCH' && s.url.startsWith('/v2/app/hello/')).length).toBeLessThan(10); // only the tree layer went up in chunks
    const mount = proxy.seen.filter((s) => s.method === 'POST' && s.url.includes('mount='));
    expect(mount.map((s) => [s.url, s.status])).toEqual([[`/v2/app/hello/blobs/uploads/?mount=${encodeURIComponent(basePush.layers[0].digest)}&from=base%2Fbookworm-python`, 201]]);
    const patches = proxy.seen.filter((s) => s.method === 'PATCH' && s.url.startsWith('/v2/app/hello/'));
    expect(patches.length).toBeGreaterThanOrEqual(3);
    expect(patches[0].headers['content-range']).toBe('0-65535');
    const manifestPut = proxy.seen.filter((s) => s.method === 'PUT' && s.url === '/v2/app/hello/manifests/1');
    expect(manifestPut.map((s) => [s.status, s.headers['content-type']])).toEqual([[201, 'application/vnd.oci.image.manifest.v1+json']]);
  });

  test('skopeo inspect sees the pushed manifest, layers and labels; skopeo copy to an OCI layout gives the same config', async () => {
    const ref = `docker://${reg.host}/app/hello:1`;
    const inspect = JSON.parse(await run('skopeo', ['inspect', '--tls-verify=false', ref]));
    expect(inspect.Digest).toBe(app.pushed!.manifestDigest);
    expect(inspect.Layers).toEqual(app.pushed!.layers.map((l) => l.digest));
    expect(inspect.Labels['dev.vrift.blob.digest']).toBe(app.blobDigest);
    expect(inspect.Env).toContain('LD_PRELOAD=/usr/lib/vrift/libvrift.so');
    const layout = path.join(work, 'layout');
    await run('skopeo', ['copy', '--src-tls-verify=false', ref, `oci:${layout}:hello`]);
    const img = await readOciLayoutPath(layout, { ref: 'hello' });
    expect((await img.manifest()).config.digest).toBe(app.configDigest);
    expect((await img.manifest()).layers.map((l) => l.digest)).toEqual(inspect.Layers);
  });

  test('docker pull of the pushed image, then run it with --network none: the tree imports, the shim is mapped', async () => {
    const ref = `${reg.host}/app/hello:1`;
    pulledTags.push(ref);
    await run('docker', ['pull', '-q', ref]);
    const id = (await run('docker', ['image', 'inspect', '-f', '{{.Id}}', ref])).trim();
    expect([app.configDigest, app.pushed!.manifestDigest]).toContain(id);
    const out = await run('docker', ['run', '--rm', '--network', 'none', '-e', 'PYTHONPATH=/vrift/py', ref, 'python3', '-c',
      "import vrift_hello; print(vrift_hello.MSG, any('libvrift.so' in l for l in open('/proc/self/maps')))"]);
    expect(out.trim()).toBe('hello from a registry True');
  });

  test('pulled back by vrift: a registry base gives the same config digest as the engine base; --load and --output work', async () => {
    const out = path.join(work, 'from-registry.tar');
    pulledTags.push(TAG);
    const r = await vrift(['build', '--base', `${reg.host}/base/bookworm-python:1`, '--add', `${tree}:/vrift/py`, '--tag', TAG, '--output', out, '--load', '--json', '--quiet'], { DOCKER_CONFIG: noCfg });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s.configDigest).toBe(app.configDigest);
    expect(s.layers[0].digest).toBe(basePush.layers[0].digest); // the gzip layer, downloaded and verified
    const fromEngine = await vrift(['build', '--base', `docker-daemon:${BASE_IMAGE}`, '--add', `${tree}:/vrift/py`, '--tag', TAG, '--output', path.join(work, 'from-engine.tar'), '--json', '--quiet']);
    expect(fromEngine.status).toBe(0);
    expect((JSON.parse(fromEngine.stdout) as Summary).configDigest).toBe(app.configDigest);
    const res = await run('docker', ['run', '--rm', '--network', 'none', '-e', 'PYTHONPATH=/vrift/py', TAG, 'python3', '-c', 'import vrift_hello; print(vrift_hello.MSG)']);
    expect(res.trim()).toBe('hello from a registry');
  });

  test('a vrift image pulled from the registry is a base too: trees merge, its layers are mounted, only the new tree layer is uploaded', async () => {
    const more = path.join(work, 'more');
    mkdirSync(more, { recursive: true });
    writeFileSync(path.join(more, 'vrift_more.py'), 'MSG = "and a merged tree"\n');
    const r = await vrift(['build', '--json', '--quiet', '--base', `${proxy.host}/app/hello:1`, '--add', `${more}:/vrift/more`, '--tag', `${proxy.host}/app/hello2:1`, '--push'], { DOCKER_CONFIG: noCfg });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s.pushed!.layers.map((l) => l.outcome)).toEqual(['mounted', 'mounted', 'mounted', 'uploaded']);
    expect(s.pushed!.layers.slice(0, 3).map((l) => l.digest)).toEqual(app.pushed!.layers.map((l) => l.digest));
    const ref = `${reg.host}/app/hello2:1`;
    pulledTags.push(ref);
    await run('docker', ['pull', '-q', ref]);
    const out = await run('docker', ['run', '--rm', '--network', 'none', '-e', 'PYTHONPATH=/vrift/py:/vrift/more', ref, 'python3', '-c', 'import vrift_hello, vrift_more; print(vrift_hello.MSG, vrift_more.MSG)']);
    expect(out.trim()).toBe('hello from a registry and a merged tree');
  });

  test('retries: a 500 on the manifest PUT is retried; with VRIFT_REGISTRY_RETRIES=0 it fails with one line and no manifest is left', async () => {
    proxy.faults.push({ match: (m, u) => m === 'PUT' && u === '/v2/app/retry/manifests/1', status: 500 });
    const r = await vrift(['build', '--base', `${proxy.host}/base/bookworm-python:1`, '--add', `${tree}:/vrift/py`, '--tag', `${proxy.host}/app/retry:1`, '--push', '--json'], { DOCKER_CONFIG: noCfg });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/pushing manifest 127\.0\.0\.1:[0-9]+\/app\/retry:1: PUT answered 500; retrying/);
    expect(proxy.seen.filter((s) => s.url === '/v2/app/retry/manifests/1' && s.method === 'PUT').map((s) => s.status)).toEqual([500, 201]);
    expect((JSON.parse(r.stdout) as Summary).pushed!.manifestDigest).toBe(app.pushed!.manifestDigest);

    proxy.faults.push({ match: (m, u) => m === 'PUT' && u === '/v2/app/retry2/manifests/1', status: 500 });
    const f = await vrift(['build', '--quiet', '--base', `${proxy.host}/base/bookworm-python:1`, '--add', `${tree}:/vrift/py`, '--tag', `${proxy.host}/app/retry2:1`, '--push'], { VRIFT_REGISTRY_RETRIES: '0', DOCKER_CONFIG: noCfg });
    expect(f.status).toBe(1);
    expect(f.stderr.trim().split('\n')).toHaveLength(1);
    expect(f.stderr.trim()).toMatch(/^vrift: pushing manifest 127\.0\.0\.1:[0-9]+\/app\/retry2:1: PUT http:\/\/127\.0\.0\.1:[0-9]+\/v2\/app\/retry2\/manifests\/1 answered 500: UNKNOWN \(injected by the test proxy\); the registry .* failed; retry later or check its logs$/);
    await expect(run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/app/retry2:1`])).rejects.toThrow(/manifest unknown/i);
  });

  test('multi-platform base: --platform selects the manifest of an index pushed with the client', async () => {
    const pool = new RegistryPool();
    const base = await readRemoteImage(parseRegistryRef(`${reg.host}/base/bookworm-python:1`), { pool, tmpDir: work });
    const arm = await withArchitecture(base.image, 'arm64');
    const index = await pushIndex(
      [{ image: base.image, platform: { os: 'linux', architecture: 'amd64' } }, { image: arm, platform: { os: 'linux', architecture: 'arm64' } }],
      parseRegistryRef(`${reg.host}/multi/bookworm-python:1`),
      { pool, tmpDir: work },
    );
    expect(index.manifests.flatMap((m) => m.layers.map((l) => l.outcome))).toEqual(['mounted', 'existed']);
    const multi = `${reg.host}/multi/bookworm-python:1`;
    const args = (platform: string) => ['build', '--quiet', '--json', '--base', multi, '--platform', platform, '--add', `${tree}:/vrift/py`, '--tag', `${reg.host}/app/multi:1`, '--push'];
    const amd = await vrift(args('linux/amd64'), { DOCKER_CONFIG: noCfg });
    expect(amd.status).toBe(0);
    expect((JSON.parse(amd.stdout) as Summary).configDigest).toBe(app.configDigest);
    // the arm64 manifest (same layers, arm64 config) gets the arm64 shim variant
    const armArgs = args('linux/arm64');
    armArgs[armArgs.indexOf(`${reg.host}/app/multi:1`)] = `${reg.host}/app/multi-arm64:1`;
    const armRun = await vrift(armArgs, { DOCKER_CONFIG: noCfg });
    expect(armRun.stderr).toBe('');
    expect(armRun.status).toBe(0);
    const armSummary = JSON.parse(armRun.stdout) as Summary & { shim: { variant: string } };
    expect(armSummary.shim.variant).toMatch(/arm64|aarch64/);
    expect(armSummary.configDigest).not.toBe(app.configDigest);
    const armInspect = JSON.parse(await run('skopeo', ['inspect', '--tls-verify=false', '--override-arch', 'arm64', `docker://${reg.host}/app/multi-arm64:1`]));
    expect(armInspect.Architecture).toBe('arm64');
    const none = await vrift(args('linux/s390x'), { DOCKER_CONFIG: noCfg });
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/no manifest for platform linux\/s390x; it has linux\/amd64, linux\/arm64 \(choose one with --platform\)/);
    const raw = JSON.parse(await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${multi}`]));
    expect(raw.manifests.map((m: { digest: string }) => m.digest)).toEqual(index.manifests.map((m) => m.manifestDigest));
  });

  test('bad input: --push needs a registry host in --tag; a missing registry tag names the registry and what to do', async () => {
    const a = await vrift(['build', '--base', `${reg.host}/base/bookworm-python:1`, '--add', `${tree}:/vrift/py`, '--tag', 'plain/name:1', '--push']);
    expect(a.status).toBe(1);
    expect(a.stderr).toMatch(/^vrift: parsing --tag plain\/name:1: --push needs a tag that names a registry host, e\.g\. 127\.0\.0\.1:5000\/plain\/name:1/);
    const b = await vrift(['build', '--base', `${reg.host}/base/nothing:1`, '--add', `${tree}:/vrift/py`, '--tag', TAG, '--output', path.join(work, 'x.tar')], { DOCKER_CONFIG: noCfg });
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(new RegExp(`^vrift: reading base image ${reg.host}/base/nothing:1: the registry ${reg.host} has no manifest ${reg.host}/base/nothing:1; check the name and tag`));
    const help = await vrift(['build', '--help']);
    expect(help.stdout.replace(/\s+/g, ' ')).toMatch(/docker:\/\/<ref> \(registry\), or a plain <ref>: a registry when its first component is a host/);
    expect(help.stdout).toMatch(/--push/);
    expect(help.stdout).toMatch(/--platform/);
  });
});

describe('registry auth through the CLI', () => {
  test('htpasswd registry: push with credentials from DOCKER_CONFIG; without them, 401 and what to do', async () => {
    const auth = startRegistry({ htpasswd: { user: 'carol', password: 'pw-123' } });
    try {
      const creds = { username: 'carol', password: 'pw-123' };
      const { image } = await tinyImage('tiny base');
      await pushImage(image, parseRegistryRef(`${auth.host}/base/tiny:1`), { pool: new RegistryPool({ credentials: () => creds }), tmpDir: work });
      const cfg = dockerConfig(mkdtempSync(path.join(work, 'cfg-')), { [auth.host]: { auth: Buffer.from('carol:pw-123').toString('base64') } });
      const args = ['build', '--json', '--quiet', '--base', `${auth.host}/base/tiny:1`, '--add', `${tree}:/vrift/py`, '--tag', `${auth.host}/app/tiny:1`, '--push'];
      const ok = await vrift(args, { DOCKER_CONFIG: cfg });
      expect(ok.stderr).toBe('');
      expect(ok.status).toBe(0);
      expect((JSON.parse(ok.stdout) as Summary).pushed!.layers.map((l) => l.outcome)).toEqual(['mounted', 'uploaded', 'uploaded']);
      const inspect = JSON.parse(await run('skopeo', ['inspect', '--tls-verify=false', '--creds', 'carol:pw-123', `docker://${auth.host}/app/tiny:1`]));
      expect(inspect.Labels['dev.vrift.version']).toBeDefined();
      const denied = await vrift(args, { DOCKER_CONFIG: noCfg });
      expect(denied.status).toBe(1);
      expect(denied.stderr).toMatch(new RegExp(`^vrift: reading base image ${auth.host}/base/tiny:1: checking manifest ${auth.host}/base/tiny:1: HEAD http://${auth.host}/v2/base/tiny/manifests/1 answered 401.*; log in to ${auth.host} \\(\`docker login ${auth.host}\``));
    } finally {
      auth.stop();
    }
  });

  test('token registry: push through the bearer flow with credentials from DOCKER_CONFIG', async () => {
    let tok: TokenServer | undefined;
    let treg: TestRegistry | undefined;
    try {
      tok = await startTokenServer(mkdtempSync(path.join(work, 'tok-')), 'dave', 'pw-456');
      treg = startRegistry({ token: { realm: tok.realm, cert: tok.cert, service: tok.service, issuer: tok.issuer } });
      const creds = { username: 'dave', password: 'pw-456' };
      const { image } = await tinyImage('tiny token base');
      await pushImage(image, parseRegistryRef(`${treg.host}/base/tiny:1`), { pool: new RegistryPool({ credentials: () => creds }), tmpDir: work });
      const cfg = dockerConfig(mkdtempSync(path.join(work, 'cfg-')), { [treg.host]: { username: 'dave', password: 'pw-456' } });
      tok.requests.length = 0;
      const r = await vrift(['build', '--json', '--quiet', '--base', `${treg.host}/base/tiny:1`, '--add', `${tree}:/vrift/py`, '--tag', `${treg.host}/app/tiny:1`, '--push'], { DOCKER_CONFIG: cfg });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect((JSON.parse(r.stdout) as Summary).pushed!.layers[0].outcome).toBe('mounted');
      expect(tok.requests.every((q) => q.authorized)).toBe(true);
      expect(tok.requests.map((q) => q.scopes.join(' '))).toEqual(expect.arrayContaining(['repository:base/tiny:pull', 'repository:app/tiny:pull,push', 'repository:app/tiny:pull,push repository:base/tiny:pull']));
    } finally {
      treg?.stop();
      await tok?.close();
    }
  });
});
