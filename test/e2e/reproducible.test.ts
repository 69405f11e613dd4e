/**
 * Reproducible builds (issue 5, item 3), through the real CLI: two different
 * temp copies of the same tree give bit-identical layer, config and manifest
 * digests and output bytes, with SOURCE_DATE_EPOCH unset (copies keep their
 * mtimes, `cp -a`) and set (copies written at different times: mtimes are
 * clamped), for both output formats (docker-archive tar and OCI layout
 * directory). test/e2e/build.test.ts covers a real package through the
 * engine; this file adds the SOURCE_DATE_EPOCH and --format oci cases on a
 * small synthetic base so it stays fast. skopeo and umoci read the layout.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, promises as fsp, readFileSync, readdirSync, utimesSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fixture, legacyArchive } from '../image/helpers';
import { writeTree } from '../verify/fixture';
import { requireEnvironment, sh, vrift } from './helpers';

jest.setTimeout(300_000);

let work: string;
let base: string;

interface Summary {
  configDigest: string;
  manifestDigest: string;
  blobDigest: string;
  layers: { digest: string; diffID: string; size: number }[];
}

function build(tree: string, out: string, sde: string | undefined, format: 'docker-archive' | 'oci'): Summary {
  const env = { ...process.env };
  delete env.SOURCE_DATE_EPOCH;
  if (sde !== undefined) env.SOURCE_DATE_EPOCH = sde;
  const r = vrift(['build', '--base', `docker-archive:${base}`, '--add', `${tree}:/vrift/app`, '--tag', 'repro/app:1', '--output', out, '--format', format, '--cache-dir', path.join(work, `cache-${path.basename(tree)}`), '--json', '--quiet'], { env });
  if (r.status !== 0) throw new Error(`vrift build failed (${r.status}): ${r.stderr}`);
  const j = JSON.parse(r.stdout) as Summary;
  return { configDigest: j.configDigest, manifestDigest: j.manifestDigest, blobDigest: j.blobDigest, layers: j.layers };
}

/** Every file of a layout directory: relative path -> bytes (hex digest of content is in the name for blobs). */
function layoutFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) {
      const p = path.join(e.parentPath ?? e.path, e.name);
      out[path.relative(dir, p)] = readFileSync(p).toString('base64');
    }
  }
  return out;
}

function setTimes(dir: string, sec: number): void {
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const p = path.join(e.parentPath ?? e.path, e.name);
    if (!e.isSymbolicLink()) utimesSync(p, sec, sec);
  }
  utimesSync(dir, sec, sec);
}

beforeAll(async () => {
  requireEnvironment();
  work = mkdtempSync(path.join(os.tmpdir(), 'vrift-repro-'));
  chmodSync(work, 0o755);
  base = path.join(work, 'base.tar');
  await legacyArchive(await fixture(), base);
});

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true });
});

test('SOURCE_DATE_EPOCH unset: two copies (cp -a) give identical digests and bytes, tar and OCI layout', () => {
  const a = path.join(work, 'a');
  mkdirSync(a);
  writeTree(a);
  const b = path.join(work, 'b');
  execFileSync('cp', ['-a', a, b]);
  const ta = build(a, path.join(work, 'a.tar'), undefined, 'docker-archive');
  const tb = build(b, path.join(work, 'b.tar'), undefined, 'docker-archive');
  expect(tb).toEqual(ta);
  expect(readFileSync(path.join(work, 'b.tar')).equals(readFileSync(path.join(work, 'a.tar')))).toBe(true);
  const la = build(a, path.join(work, 'a-oci'), undefined, 'oci');
  const lb = build(b, path.join(work, 'b-oci'), undefined, 'oci');
  expect(lb).toEqual(la);
  expect(la.manifestDigest).toBe(ta.manifestDigest); // same image whatever the container format
  expect(layoutFiles(path.join(work, 'b-oci'))).toEqual(layoutFiles(path.join(work, 'a-oci')));
});

test('SOURCE_DATE_EPOCH set: copies written at different times give identical digests; the epoch is in the config', () => {
  const c = path.join(work, 'c');
  const d = path.join(work, 'd');
  for (const [dir, t] of [[c, 1_800_000_000], [d, 1_900_000_000]] as const) {
    mkdirSync(dir);
    writeTree(dir);
    setTimes(dir, t);
  }
  const sde = '1750000000';
  const tc = build(c, path.join(work, 'c.tar'), sde, 'docker-archive');
  const td = build(d, path.join(work, 'd.tar'), sde, 'docker-archive');
  expect(td).toEqual(tc);
  expect(readFileSync(path.join(work, 'd.tar')).equals(readFileSync(path.join(work, 'c.tar')))).toBe(true);
  const lc = build(c, path.join(work, 'c-oci'), sde, 'oci');
  const ld = build(d, path.join(work, 'd-oci'), sde, 'oci');
  expect(ld).toEqual(lc);
  expect(lc.manifestDigest).toBe(tc.manifestDigest);
  expect(layoutFiles(path.join(work, 'd-oci'))).toEqual(layoutFiles(path.join(work, 'c-oci')));
  // Without the clamp the two copies differ (the test would otherwise prove nothing).
  const uc = build(c, path.join(work, 'uc.tar'), undefined, 'docker-archive');
  const ud = build(d, path.join(work, 'ud.tar'), undefined, 'docker-archive');
  expect(ud.layers[ud.layers.length - 1].diffID).not.toBe(uc.layers[uc.layers.length - 1].diffID);
  const info = JSON.parse(sh('skopeo', ['inspect', '--config', `oci:${path.join(work, 'c-oci')}:1`]));
  expect(info.created).toBe('2025-06-15T15:06:40Z');
  expect(new Set(info.history.slice(-2).map((h: { created: string }) => h.created))).toEqual(new Set(['2025-06-15T15:06:40Z']));
});

test('the OCI layout directory is read by skopeo (same manifest digest) and unpacked by umoci', () => {
  const layout = path.join(work, 'a-oci');
  const info = JSON.parse(sh('skopeo', ['inspect', `oci:${layout}:1`]));
  const tar = JSON.parse(sh('skopeo', ['inspect', `oci-archive:${path.join(work, 'a.tar')}`]));
  expect(info.Digest).toBe(tar.Digest);
  expect(info.Layers).toEqual(tar.Layers);
  const bundle = path.join(work, 'bundle');
  sh('umoci', ['unpack', '--image', `${layout}:1`, bundle]);
  expect(readFileSync(path.join(bundle, 'rootfs', 'vrift', 'app', 'pkg', 'mod.py'), 'utf8')).toBe('X = 1\n'.repeat(1000));
  const r = vrift(['verify', '--root', path.join(bundle, 'rootfs')]);
  expect(r.stdout).toMatch(/^verify: OK/m);
  expect(r.status).toBe(0);
});

test('--format oci refuses a non-empty directory and leaves it untouched', () => {
  const out = path.join(work, 'a-oci');
  const before = layoutFiles(out);
  const env = { ...process.env };
  delete env.SOURCE_DATE_EPOCH;
  const r = vrift(['build', '--quiet', '--base', `docker-archive:${base}`, '--add', `${path.join(work, 'a')}:/vrift/app`, '--tag', 'repro/app:1', '--output', out, '--format', 'oci'], { env });
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/^vrift: writing OCI layout .*a-oci: the directory exists and is not empty; remove it or give a new path$/m);
  expect(layoutFiles(out)).toEqual(before);
  expect(readdirSync(work).filter((f) => f.includes('vrift-tmp'))).toEqual([]);
});
