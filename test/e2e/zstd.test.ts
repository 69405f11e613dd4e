/**
 * `vrift build --compression zstd` (issue 5, requirement 5) against real
 * components: the tree layer is pushed to a real docker-registry and written
 * as an OCI image layout in the same build; skopeo reads the pushed
 * manifest and copies it; the layer extracted by GNU tar passes `vrift
 * verify --root`; umoci unpacks it where umoci reads zstd (Debian's 0.4.7
 * does not); `vrift inspect` decompresses the layer from the registry. The zstd CLI is the oracle for digest (compressed bytes) vs
 * diffID (the tar). `--load` is refused on an engine that cannot read zstd
 * layers (Docker 20.10 here: its docker load fails with "invalid tar header").
 */
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BASE_IMAGE, imageExists, requireEnvironment, vrift } from './helpers';
import { startRegistry, type TestRegistry } from '../registry/helpers';

jest.setTimeout(300_000);

const ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
const GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

interface Summary {
  manifestDigest: string;
  configDigest: string;
  blobDigest: string;
  layers: { role: string; digest: string; diffID: string; size: number; mediaType: string }[];
  pushed?: { reference: string; manifestDigest: string };
}

let work: string;
let tree: string;
let reg: TestRegistry;
let sum: Summary;
let ref: string;
const env = { ...process.env, SOURCE_DATE_EPOCH: '1700000000' };

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobFile = (layout: string, digest: string): string => path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
const treeLayer = (s: Summary) => s.layers[s.layers.length - 1];

function build(extra: string[]): Summary {
  const r = vrift(['build', '--base', `docker-daemon:${BASE_IMAGE}`, '--add', `${tree}:/vrift/z`, '--compression', 'zstd', '--json', '--quiet', '--cache-dir', path.join(work, 'cache'), ...extra], { env });
  if (r.status !== 0) throw new Error(`vrift build failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Summary;
}

beforeAll(() => {
  requireEnvironment();
  work = mkdtempSync(path.join(os.tmpdir(), 'vrift-zstd-'));
  tree = path.join(work, 'tree');
  mkdirSync(path.join(tree, 'pkg', 'lib'), { recursive: true });
  for (let i = 0; i < 30; i++) writeFileSync(path.join(tree, 'pkg', 'lib', `m${i}.js`), `module.exports = ${i};\n`.repeat(50 + i));
  writeFileSync(path.join(tree, 'pkg', 'README'), 'zstd layer\n');
  reg = startRegistry();
  ref = `${reg.host}/app/zstd:1`;
  sum = build(['--tag', ref, '--push', '--output', path.join(work, 'layout'), '--format', 'oci']);
});

afterAll(() => {
  reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the tree layer is zstd (OCI media type); digest is over the compressed bytes, diffID over the tar; the shim layer stays gzip', () => {
  const t = treeLayer(sum);
  expect(t.role).toBe('vrift');
  expect(t.mediaType).toBe(ZSTD);
  expect(sum.layers.find((l) => l.role === 'shim')?.mediaType).toBe(GZIP);
  const stored = readFileSync(blobFile(path.join(work, 'layout'), t.digest));
  expect(stored.readUInt32LE(0)).toBe(0xfd2fb528); // zstd frame magic
  expect(sha(stored)).toBe(t.digest);
  expect(stored.length).toBe(t.size);
  const tarBytes = execFileSync('zstd', ['-dc'], { input: stored, maxBuffer: 256 << 20 });
  expect(sha(tarBytes)).toBe(t.diffID);
  const config = JSON.parse(readFileSync(blobFile(path.join(work, 'layout'), sum.configDigest), 'utf8'));
  expect(config.rootfs.diff_ids[config.rootfs.diff_ids.length - 1]).toBe(t.diffID);
  // GNU tar lists the decompressed layer: the tree and the blob.
  const names = execFileSync('tar', ['-t'], { input: tarBytes }).toString().split('\n');
  expect(names).toEqual(expect.arrayContaining(['usr/lib/vrift/psfs.blob', 'vrift/z/pkg/README']));
});

test('skopeo inspect of the pushed image lists the zstd layer; skopeo copy into an OCI layout keeps its digest', () => {
  // The pushed manifest differs from the local one only by the base layer, gzipped for the push (src/image/remoteWrite.ts).
  const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], { encoding: 'utf8' }));
  const last = raw.layers[raw.layers.length - 1];
  expect([last.mediaType, last.digest, last.size]).toEqual([ZSTD, treeLayer(sum).digest, treeLayer(sum).size]);
  const copy = path.join(work, 'copy');
  execFileSync('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${copy}:z`], { stdio: 'ignore' });
  const idx = JSON.parse(readFileSync(path.join(copy, 'index.json'), 'utf8'));
  const manifest = JSON.parse(readFileSync(blobFile(copy, idx.manifests[0].digest), 'utf8'));
  expect(manifest.layers[manifest.layers.length - 1]).toMatchObject({ mediaType: ZSTD, digest: treeLayer(sum).digest });
  expect(manifest.config.digest).toBe(sum.configDigest);
  expect(raw.config.digest).toBe(sum.configDigest);
});

test('the zstd layer extracted with GNU tar over an empty root: vrift verify --root passes', () => {
  const rootfs = path.join(work, 'rootfs');
  mkdirSync(rootfs);
  const tarBytes = execFileSync('zstd', ['-dc', blobFile(path.join(work, 'layout'), treeLayer(sum).digest)], { maxBuffer: 256 << 20 });
  execFileSync('tar', ['-x', '-p', '--numeric-owner', '-C', rootfs], { input: tarBytes });
  expect(readFileSync(path.join(rootfs, 'vrift', 'z', 'pkg', 'lib', 'm7.js'), 'utf8')).toBe('module.exports = 7;\n'.repeat(57));
  const r = vrift(['verify', '--root', rootfs, '--json']);
  expect(r.status).toBe(0);
  const rep = JSON.parse(r.stdout);
  expect(rep.outcome).toBe('ok');
  expect(rep.blobDigest).toBe(sum.blobDigest);
  expect([rep.mismatches, rep.missing, rep.extra]).toEqual([[], [], []]);
});

test('umoci unpack of the OCI layout: unpacks and verifies where umoci reads zstd; Debian\'s umoci 0.4.7 refuses the media type', () => {
  const bundle = path.join(work, 'bundle');
  const idx = JSON.parse(readFileSync(path.join(work, 'layout', 'index.json'), 'utf8'));
  const tag = idx.manifests[0].annotations['org.opencontainers.image.ref.name'];
  const r = spawnSync('umoci', ['unpack', '--image', `${path.join(work, 'layout')}:${tag}`, bundle], { encoding: 'utf8' });
  if (r.status !== 0) {
    // umoci 0.4.x knows only tar and tar+gzip layers (measured: 0.4.7+ds-3).
    expect(execFileSync('umoci', ['--version'], { encoding: 'utf8' })).toMatch(/^umoci version 0\.4\./);
    expect(r.stderr).toContain(`blob is not correct mediatype: ${ZSTD}`);
    return;
  }
  const rootfs = path.join(bundle, 'rootfs');
  expect(readFileSync(path.join(rootfs, 'vrift', 'z', 'pkg', 'README'), 'utf8')).toBe('zstd layer\n');
  const v = vrift(['verify', '--root', rootfs, '--json']);
  expect(v.status).toBe(0);
});

test('vrift inspect pulls the image back and decompresses the zstd layer', () => {
  const r = vrift(['inspect', ref, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const rep = JSON.parse(r.stdout);
  expect(rep.blob.digest).toBe(sum.blobDigest);
  expect(rep.blob.labelMatches).toBe(true);
  expect(rep.layers[rep.layers.length - 1]).toMatchObject({ role: 'tree', hasBlob: true, digest: treeLayer(sum).digest });
});

test('the same inputs give the same zstd layer digest and manifest', () => {
  const again = build(['--tag', ref, '--output', path.join(work, 'layout2'), '--format', 'oci']);
  expect(treeLayer(again).digest).toBe(treeLayer(sum).digest);
  expect(again.manifestDigest).toBe(sum.manifestDigest);
});

test('--output x.tar with zstd: the note names the readers that read it (skopeo does; this umoci does not, so it is not named)', () => {
  const out = path.join(work, 'z.tar');
  const r = vrift(['build', '--base', `docker-daemon:${BASE_IMAGE}`, '--add', `${tree}:/vrift/z`, '--compression', 'zstd', '--tag', 'vrift-zstd/note:1', '--output', out, '--cache-dir', path.join(work, 'cache')], { env });
  expect(r.status).toBe(0);
  expect(r.stderr.split('\n').filter((l) => l.startsWith('vrift: note:'))).toEqual([`vrift: note: ${out} has a zstd layer: docker load reads it from Docker 23.0, skopeo reads it as an OCI layout tar`]);
  const inspected = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci-archive:${out}`], { encoding: 'utf8' })) as { layers: { mediaType: string }[] };
  expect(inspected.layers[inspected.layers.length - 1].mediaType).toBe(ZSTD);
  if (/^umoci version 0\.4\./.test(execFileSync('umoci', ['--version'], { encoding: 'utf8' }))) {
    const layout = path.join(work, 'z-layout');
    mkdirSync(layout);
    execFileSync('tar', ['-xf', out, '-C', layout]);
    const ref = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')).manifests[0].annotations['org.opencontainers.image.ref.name'];
    const u = spawnSync('umoci', ['unpack', '--image', `${layout}:${ref}`, path.join(work, 'z-bundle')], { encoding: 'utf8' });
    expect(u.status).not.toBe(0);
    expect(u.stderr).toContain(ZSTD);
  }
});

test('--load with zstd: refused before anything is built on an engine that cannot read zstd layers, loaded on one that can', () => {
  const version = execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' }).trim();
  const tag = `vrift-zstd/load:${process.pid}`;
  const r = vrift(['build', '--base', `docker-daemon:${BASE_IMAGE}`, '--add', `${tree}:/vrift/z`, '--compression', 'zstd', '--tag', tag, '--load', '--quiet'], { env });
  try {
    if (Number(version.split('.')[0]) < 23) {
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`vrift: loading into the engine with --compression zstd: Docker ${version} cannot read zstd-compressed layers (docker load reads them from Docker 23.0); use --compression gzip with --load, or write the zstd image with --output or --push only\n`);
      expect(imageExists(tag)).toBe(false);
    } else {
      expect(r.status).toBe(0);
      const run = spawnSync('docker', ['run', '--rm', '--network', 'none', tag, 'cat', '/vrift/z/pkg/README'], { encoding: 'utf8' });
      expect(run.stdout).toBe('zstd layer\n');
    }
  } finally {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
  }
});
