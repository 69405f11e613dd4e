/**
 * End to end, against the real engine: `vrift build` of a real Python package
 * (python3-pygments from Debian, unpacked with dpkg -x) onto the local
 * bookworm + python3 image; then docker load, skopeo, umoci, the package in a
 * container, strace syscall counts with and without the shim, and a stat
 * differential over every /vrift path. Bad input goes through the real CLI.
 *
 * Needs: dockerd, vrift-test/bookworm-python:latest (scripts/setup-machine.sh),
 * skopeo, umoci, dpkg, apt-get access to the Debian archive (first run only;
 * the .deb is cached in /var/cache/vrift/debs).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, promises as fsp, readFileSync, readdirSync, existsSync, statSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { readOciLayoutPath } from '../../src/image/ociLayout';
import { fixture, legacyArchive } from '../image/helpers';
import { BASE_IMAGE, ROOT, debFile, imageExists, requireEnvironment, sh, vrift } from './helpers';

jest.setTimeout(600_000);

const PKG = 'python3-pygments';
const TAG = `vrift-e2e/pygments:${process.pid}`;
const REPRO_TAG = `vrift-e2e/pygments-repro:${process.pid}`;
const BAD_TAG = `vrift-e2e/bad:${process.pid}`;

const USE_PY = `
import importlib, pkgutil
import pygments
from pygments import highlight
from pygments.lexers import PythonLexer
from pygments.formatters import HtmlFormatter
ok = 0
for m in pkgutil.walk_packages(pygments.__path__, 'pygments.'):
    if m.name.endswith('__main__'):
        continue  # runs the pygmentize CLI on import
    try:
        importlib.import_module(m.name)
        ok += 1
    except ImportError:
        pass
html = highlight('def f(x):\\n    return x + 1\\n', PythonLexer(), HtmlFormatter())
print(pygments.__version__, ok, html.count('<span'), pygments.__file__)
`;

const STAT_PY = `
import os, json, sys
FIELDS = ['st_mode', 'st_ino', 'st_dev', 'st_nlink', 'st_uid', 'st_gid', 'st_size', 'st_atime_ns', 'st_mtime_ns', 'st_ctime_ns', 'st_blocks', 'st_blksize', 'st_rdev']
out = {}
def rec(p):
    for fn, name in ((os.stat, 'stat'), (os.lstat, 'lstat')):
        try:
            s = fn(p)
            out[name + ':' + p] = {f: getattr(s, f) for f in FIELDS}
        except OSError as e:
            out[name + ':' + p] = {'errno': e.errno}
for root, dirs, files in os.walk('/vrift'):
    rec(root)
    for n in dirs + files:
        rec(os.path.join(root, n))
json.dump(out, sys.stdout, sort_keys=True)
`;

/** Fields the identity policy lets differ between the shim and the kernel (docs: team brief "Identity policy"). */
const IDENTITY_FIELDS = new Set(['st_ino', 'st_dev', 'st_ctime_ns', 'st_atime_ns']);

interface Summary {
  outcome: string;
  tag: string;
  imageId: string;
  configDigest: string;
  manifestDigest: string;
  blobDigest: string;
  layers: { role: string; digest: string; diffID: string; size: number; mediaType: string }[];
  timings: { tree: number; base: number; output: number; load: number };
  stats: { files: number; dirs: number; symlinks: number; bytes: number; casObjects: number; dedupRatio: number; hashHits: number; hashMisses: number; blobBytes: number; seconds: number };
}

let work: string;
let tree: string;
let scripts: string;
let outTar: string;
let debVersion: string;
let summary: Summary;
let buildSeconds: number;
let mainLog: string;
const report: Record<string, unknown> = {};

/** A clean environment for the CLI: no SOURCE_DATE_EPOCH unless given. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e = { ...process.env, ...extra };
  if (!('SOURCE_DATE_EPOCH' in extra)) delete e.SOURCE_DATE_EPOCH;
  return e;
}

function dockerRun(args: string[], cmd: string[]): string {
  return sh('docker', ['run', '--rm', '--network', 'none', '-v', `${scripts}:/scripts`, ...args, TAG, ...cmd]);
}

/** Regular files, their bytes, and the bytes once stored per distinct (content, permission bits, mtime seconds) as the CAS does. */
function countFiles(dir: string): { files: number; bytes: number; uniqueBytes: number } {
  let files = 0;
  let bytes = 0;
  const objects = new Map<string, number>();
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) {
      const p = path.join(e.parentPath ?? e.path, e.name);
      const data = readFileSync(p);
      files++;
      bytes += data.length;
      const st = statSync(p);
      objects.set(`${createHash('sha256').update(data).digest('hex')}:${st.mode & 0o7777}:${Math.floor(st.mtimeMs / 1000)}`, data.length);
    }
  }
  return { files, bytes, uniqueBytes: [...objects.values()].reduce((a, b) => a + b, 0) };
}

beforeAll(async () => {
  requireEnvironment();
  work = mkdtempSync(path.join(os.tmpdir(), 'vrift-e2e-'));
  chmodSync(work, 0o755);
  const deb = debFile(PKG);
  debVersion = /_([^_]+)_all\.deb$/.exec(deb)![1].replace(/\+dfsg.*$/, '').replace(/-[^-]+$/, '');
  sh('dpkg', ['-x', deb, path.join(work, 'deb')]);
  tree = path.join(work, 'deb', 'usr', 'lib', 'python3', 'dist-packages');
  scripts = path.join(work, 'scripts');
  mkdirSync(scripts, { mode: 0o777 });
  chmodSync(scripts, 0o777);
  writeFileSync(path.join(scripts, 'use.py'), USE_PY);
  writeFileSync(path.join(scripts, 'statdump.py'), STAT_PY);
  outTar = path.join(work, 'out.tar');

  const t0 = process.hrtime.bigint();
  const r = vrift(['build', '--base', BASE_IMAGE, '--add', `${tree}:/vrift/python`, '--tag', TAG, '--load', '--output', outTar, '--cache-dir', path.join(work, 'cache'), '--json'], { env: env() });
  buildSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`vrift build failed (${r.status}): ${r.stderr}`);
  summary = JSON.parse(r.stdout) as Summary;
  mainLog = r.stderr;
  report.buildSeconds = Number(buildSeconds.toFixed(2));
  report.layers = summary.layers.map((l) => ({ role: l.role, size: l.size }));
  report.tree = summary.stats;
  report.timings = summary.timings;
});

afterAll(async () => {
  for (const t of [TAG, REPRO_TAG, BAD_TAG]) spawnSync('docker', ['rmi', '-f', t], { stdio: 'ignore' });
  if (work) await fsp.rm(work, { recursive: true, force: true });
  if (Object.keys(report).length) process.stderr.write(`vrift e2e measurements: ${JSON.stringify(report)}\n`);
});

describe('vrift build on a real package (python3-pygments) and a real engine', () => {
  test('JSON summary, engine image and archive agree', () => {
    expect(summary.outcome).toBe('success');
    expect(summary.tag).toBe(TAG);
    const { files, bytes, uniqueBytes } = countFiles(tree);
    expect(summary.stats.files).toBe(files);
    expect(summary.stats.bytes).toBe(bytes);
    expect(summary.stats.casObjects).toBeLessThan(files); // the package has duplicate files (e.g. empty __init__.py)
    expect(summary.stats.dedupRatio).toBeCloseTo(bytes / uniqueBytes, 9);
    const roles = summary.layers.map((l) => l.role);
    expect(roles.slice(-2)).toEqual(['shim', 'vrift']);
    const inspect = JSON.parse(sh('docker', ['image', 'inspect', TAG]))[0];
    expect(inspect.Id).toBe(summary.configDigest);
    expect(inspect.RootFS.Layers).toEqual(summary.layers.map((l) => l.diffID));
    const base = JSON.parse(sh('docker', ['image', 'inspect', BASE_IMAGE]))[0];
    expect(inspect.RootFS.Layers.slice(0, -2)).toEqual(base.RootFS.Layers); // base layers unchanged
    expect(inspect.Config.Env).toContain('LD_PRELOAD=/usr/lib/vrift/libvrift.so');
    expect(inspect.Config.Labels['dev.vrift.blob.digest']).toBe(summary.blobDigest);
    expect(inspect.Config.Labels['dev.vrift.version']).toBe(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    expect(existsSync(outTar)).toBe(true);
    // The base came from this engine: only the new layers were sent to it.
    expect(mainLog).toMatch(/loading .* into the engine \(new layers only, \d+ bytes\)/);
    expect(mainLog).not.toMatch(/failed/);
    expect(readdirSync(work).filter((f) => f.includes('vrift-tmp'))).toEqual([]);
  });

  test('docker load accepts the --output archive and yields the same image', () => {
    sh('docker', ['rmi', TAG]);
    expect(imageExists(TAG)).toBe(false);
    const out = sh('docker', ['load', '-i', outTar]);
    expect(out).toContain(`Loaded image: ${TAG}`);
    expect(JSON.parse(sh('docker', ['image', 'inspect', TAG]))[0].Id).toBe(summary.configDigest);
  });

  test('skopeo inspect and umoci unpack (after skopeo copy to an OCI layout) accept the archive', async () => {
    const info = JSON.parse(sh('skopeo', ['inspect', `docker-archive:${outTar}`]));
    expect(info.Layers).toEqual(summary.layers.map((l) => l.diffID));
    expect(info.Labels['dev.vrift.blob.digest']).toBe(summary.blobDigest);
    expect(info.Env).toContain('LD_PRELOAD=/usr/lib/vrift/libvrift.so');
    // The archive is also an OCI layout tar: skopeo reads our exact manifest from it.
    expect(JSON.parse(sh('skopeo', ['inspect', `oci-archive:${outTar}`])).Digest).toBe(summary.manifestDigest);
    const layout = path.join(work, 'oci');
    sh('skopeo', ['copy', `docker-archive:${outTar}`, `oci:${layout}:e2e`]);
    const bundle = path.join(work, 'bundle');
    sh('umoci', ['unpack', '--image', `${layout}:e2e`, bundle]);
    const rootfs = path.join(bundle, 'rootfs');
    const rel = 'pygments/lexers/python.py';
    expect(readFileSync(path.join(rootfs, 'vrift/python', rel)).equals(readFileSync(path.join(tree, rel)))).toBe(true);
    expect(readFileSync(path.join(rootfs, 'usr/lib/vrift/libvrift.so')).equals(readFileSync(path.join(ROOT, 'shim/build/libvrift.so')))).toBe(true);
    expect(existsSync(path.join(rootfs, 'usr/lib/vrift/psfs.blob'))).toBe(true);
    const runtime = JSON.parse(readFileSync(path.join(bundle, 'config.json'), 'utf8'));
    expect(runtime.process.env).toContain('LD_PRELOAD=/usr/lib/vrift/libvrift.so');
    // Our own OCI layout reader reads skopeo's layout back to the same layers.
    const img = await readOciLayoutPath(layout, { ref: 'e2e' });
    expect((await img.config()).rootfs.diff_ids).toEqual(summary.layers.map((l) => l.diffID));
    await fsp.rm(bundle, { recursive: true, force: true });
  });

  test('the package imports and works in the container', () => {
    const out = dockerRun(['-e', 'PYTHONPATH=/vrift/python'], ['python3', '/scripts/use.py']).trim();
    const [version, modules, spans, file] = out.split(' ');
    expect(version).toBe(debVersion);
    expect(Number(modules)).toBeGreaterThan(200);
    expect(Number(spans)).toBeGreaterThan(3);
    expect(file).toBe('/vrift/python/pygments/__init__.py');
    report.modulesImported = Number(modules);
  });

  test('stat-family syscalls on /vrift paths: at least 90% fewer with the shim than with LD_PRELOAD emptied', () => {
    const count = (name: string, extra: string[]): { vrift: number; all: number; out: string } => {
      const out = dockerRun(['-e', 'PYTHONPATH=/vrift/python', ...extra], ['strace', '-f', '-qq', '-o', `/scripts/${name}.trace`, '-e', 'trace=%%stat', 'python3', '/scripts/use.py']).trim();
      const lines = readFileSync(path.join(scripts, `${name}.trace`), 'utf8').split('\n').filter((l) => l.trim());
      return { vrift: lines.filter((l) => l.includes('"/vrift')).length, all: lines.length, out };
    };
    const withShim = count('with', []);
    const without = count('without', ['-e', 'LD_PRELOAD=']);
    expect(withShim.out).toBe(without.out); // same program result either way
    expect(without.vrift).toBeGreaterThan(500); // the workload really stats /vrift a lot
    expect(withShim.vrift).toBeLessThanOrEqual(without.vrift * 0.1);
    report.statSyscallsOnVrift = { withShim: withShim.vrift, withoutShim: without.vrift, reduction: Number((1 - withShim.vrift / without.vrift).toFixed(4)) };
    report.statSyscallsAll = { withShim: withShim.all, withoutShim: without.all };
  });

  test('os.stat/os.lstat of every /vrift path: same values with and without the shim, except st_ino, st_dev, st_ctime, st_atime', () => {
    const withShim = JSON.parse(dockerRun([], ['python3', '/scripts/statdump.py'])) as Record<string, Record<string, number>>;
    const without = JSON.parse(dockerRun(['-e', 'LD_PRELOAD='], ['python3', '/scripts/statdump.py'])) as Record<string, Record<string, number>>;
    expect(Object.keys(withShim).sort()).toEqual(Object.keys(without).sort());
    const paths = Object.keys(withShim).filter((k) => k.startsWith('lstat:'));
    expect(paths.length).toBe(summary.stats.files + summary.stats.dirs + summary.stats.symlinks + summary.stats.casObjects);
    const diffs: string[] = [];
    let synthetic = 0;
    for (const [k, a] of Object.entries(withShim)) {
      const b = without[k];
      for (const f of Object.keys(b)) if (!IDENTITY_FIELDS.has(f) && a[f] !== b[f]) diffs.push(`${k} ${f}: shim ${a[f]} kernel ${b[f]}`);
      if (a.st_ino !== b.st_ino) synthetic++;
    }
    expect(diffs).toEqual([]);
    // The values came from the blob: the synthetic inode numbers differ from the kernel's.
    expect(synthetic).toBe(Object.keys(withShim).length);
    report.statPathsCompared = paths.length;
  });

  test('reproducible: a docker-archive of the base and another copy of the tree give the same config and manifest digests', async () => {
    const baseTar = path.join(work, 'base.tar');
    sh('docker', ['save', '-o', baseTar, BASE_IMAGE]);
    const copy = path.join(work, 'tree-copy');
    sh('cp', ['-a', tree, copy]);
    const out = path.join(work, 'repro.tar');
    const r = vrift(['build', '--base', `docker-archive:${baseTar}`, '--add', `${copy}:/vrift/python`, '--tag', TAG, '--output', out, '--load', '--cache-dir', path.join(work, 'cache2'), '--json'], { env: env() });
    expect(r.status).toBe(0);
    // A docker-archive base: the full archive is loaded.
    expect(r.stderr).toMatch(new RegExp(`loading ${TAG} into the engine \\(${statSync(out).size} bytes\\)`));
    expect(JSON.parse(sh('docker', ['image', 'inspect', TAG]))[0].Id).toBe(summary.configDigest);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s.configDigest).toBe(summary.configDigest);
    expect(s.manifestDigest).toBe(summary.manifestDigest);
    expect(s.layers).toEqual(summary.layers);
    expect(Object.keys(s.timings).sort()).toEqual(['base', 'load', 'output', 'tree']);
    expect(readFileSync(out).equals(readFileSync(outTar))).toBe(true);
    await fsp.rm(baseTar, { force: true });
    await fsp.rm(out, { force: true });
  });

  test('an OCI layout base written by skopeo (gzip layers, OCI config) works; the vrift layers are the same as on the engine base', () => {
    const layout = path.join(work, 'base-oci');
    sh('skopeo', ['copy', `docker-daemon:${BASE_IMAGE}`, `oci:${layout}:base`]);
    const out = path.join(work, 'from-oci.tar');
    const r = vrift(['build', '--base', `oci:${layout}:base`, '--add', `${tree}:/vrift/python`, '--tag', REPRO_TAG, '--output', out, '--cache-dir', path.join(work, 'cache'), '--json', '--quiet'], { env: env() });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s.layers.slice(-2)).toEqual(summary.layers.slice(-2)); // shim + tree layers do not depend on the base
    expect(s.layers[0].diffID).toBe(summary.layers[0].diffID);
    expect(s.layers[0].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip'); // copied as stored
    expect(s.stats.hashHits).toBe(s.stats.files); // same tree, same cache: nothing re-hashed
    const info = JSON.parse(sh('skopeo', ['inspect', `docker-archive:${out}`]));
    expect(info.Layers).toEqual(s.layers.map((l) => l.diffID));
    const loaded = sh('docker', ['load', '-i', out]);
    expect(loaded).toContain(`Loaded image: ${REPRO_TAG}`);
    const ok = sh('docker', ['run', '--rm', '--network', 'none', '-e', 'PYTHONPATH=/vrift/python', REPRO_TAG, 'python3', '-c', 'import pygments.lexers; print(pygments.lexers.get_lexer_by_name("c").name)']).trim();
    expect(ok).toBe('C');
  });
});

describe('bad input through the CLI: one clear line, exit code != 0, nothing left behind', () => {
  let bad: string;
  let baseTar: string;
  beforeAll(async () => {
    bad = path.join(work, 'bad');
    mkdirSync(bad, { mode: 0o755 });
    chmodSync(bad, 0o755);
    baseTar = path.join(bad, 'base.tar');
    await legacyArchive(await fixture(), baseTar);
    chmodSync(baseTar, 0o644);
    const mk = (name: string) => {
      const d = path.join(bad, name);
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, 'ok.py'), 'x = 1\n');
      return d;
    };
    execFileSync('mkfifo', [path.join(mk('fifo'), 'pipe')]);
    const sock = net.createServer().listen(path.join(mk('sock'), 'sock'));
    await new Promise((r) => sock.once('listening', r));
    sock.close(); // closing an fs socket server unlinks the path on some Node versions: recreate below if so
    if (!existsSync(path.join(bad, 'sock', 'sock'))) {
      const s2 = net.createServer().listen(path.join(bad, 'sock', 'sock'));
      await new Promise((r) => s2.once('listening', r));
      s2.unref();
    }
    execFileSync('mknod', [path.join(mk('dev'), 'null'), 'c', '1', '3']);
    execFileSync('ln', ['-s', '/etc/passwd', path.join(mk('abs-link'), 'passwd')]);
    execFileSync('ln', ['-s', '../../../etc', path.join(mk('up-link'), 'etc')]);
    mkdirSync(path.join(mk('up-link2'), 'sub'));
    execFileSync('ln', ['-s', '../../x', path.join(bad, 'up-link2', 'sub', 'x')]);
    mk('good');
    for (const d of ['cache', 'nobody-out']) {
      mkdirSync(path.join(bad, d), { mode: 0o777 });
      chmodSync(path.join(bad, d), 0o777); // writable for the cases run as nobody
    }
    const closed = mk('closed');
    chmodSync(closed, 0o700);
    const f = path.join(mk('unreadable-file'), 'secret.py');
    writeFileSync(f, 'y = 2\n');
    chmodSync(f, 0o000);
    writeFileSync(path.join(bad, 'plain-file'), 'not a dir');
  });

  const cases: { name: string; args: (b: string) => string[]; env?: Record<string, string>; asNobody?: boolean; noSinks?: boolean; expect: (b: string) => RegExp; exit?: number }[] = [
    { name: 'missing base image in the engine', args: (b) => ['--base', 'docker-daemon:vrift-e2e/no-such-image:1', '--add', `${b}/good:/vrift/x`], expect: () => /^vrift: reading base image docker-daemon:vrift-e2e\/no-such-image:1: the local engine has no such image; build or `docker load` it first/ },
    { name: 'missing base image, bare reference', args: (b) => ['--base', 'vrift-e2e/no-such-image:1', '--add', `${b}/good:/vrift/x`], expect: () => /no such image.*without a registry host means the local engine/ },
    { name: 'missing base archive', args: (b) => ['--base', `docker-archive:${b}/nope.tar`, '--add', `${b}/good:/vrift/x`], expect: (b) => new RegExp(`reading base image docker-archive:${b}/nope.tar: ${b}/nope.tar: no such file or directory; check the path`) },
    { name: 'base archive that is not an image tar', args: (b) => ['--base', `docker-archive:${b}/plain-file`, '--add', `${b}/good:/vrift/x`], expect: (b) => new RegExp(`^vrift: reading docker-archive:${b}/plain-file: not a readable tar archive \\(.*\\); give an image saved with \`docker save`) },
    { name: '--platform that a single-platform base does not have', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--platform', 'linux/arm64', '--add', `${b}/good:/vrift/x`], expect: (b) => new RegExp(`building on docker-archive:${b}/base.tar: --platform linux/arm64 does not match the base image, which is linux/amd64`) },
    { name: 'missing source', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/nope:/vrift/x`], expect: (b) => new RegExp(`adding ${b}/nope: no such directory`) },
    { name: 'source is a file', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/plain-file:/vrift/x`], expect: (b) => new RegExp(`adding ${b}/plain-file: not a directory`) },
    { name: 'unreadable source directory', asNobody: true, args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/closed:/vrift/x`], expect: (b) => new RegExp(`adding ${b}/closed: directory is not readable by this user`) },
    { name: 'unreadable file in the source', asNobody: true, args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/unreadable-file:/vrift/x`], expect: (b) => new RegExp(`${b}/unreadable-file/secret.py.*(permission|EACCES|not readable)`, 'i') },
    { name: 'destination outside /vrift', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/good:/opt/x`], expect: (b) => new RegExp(`adding ${b}/good: destination /opt/x is outside /vrift`) },
    { name: 'destination escaping /vrift with ..', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/good:/vrift/../etc`], expect: () => /destination \/vrift\/\.\.\/etc is outside \/vrift/ },
    { name: 'two --add onto the same destination', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/good:/vrift/x`, '--add', `${b}/fifo:/vrift/x/`], expect: (b) => new RegExp(`adding ${b}/fifo: destination /vrift/x is already used by --add ${b}/good:/vrift/x`) },
    { name: 'FIFO in the source', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/fifo:/vrift/x`], expect: (b) => new RegExp(`${b}/fifo/pipe.*FIFO`) },
    { name: 'socket in the source', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/sock:/vrift/x`], expect: (b) => new RegExp(`${b}/sock/sock.*socket`) },
    { name: 'device in the source', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/dev:/vrift/x`], expect: (b) => new RegExp(`${b}/dev/null.*device`) },
    { name: 'absolute symlink in the source', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/abs-link:/vrift/x`], expect: (b) => new RegExp(`${b}/abs-link/passwd.*/etc/passwd`) },
    { name: 'symlink leaving the source through ..', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/up-link:/vrift/x`], expect: (b) => new RegExp(`${b}/up-link/etc.*\\.\\./\\.\\./\\.\\./etc`) },
    { name: 'nested symlink leaving the source', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/up-link2:/vrift/x`], expect: (b) => new RegExp(`${b}/up-link2/sub/x`) },
    { name: 'malformed SOURCE_DATE_EPOCH', env: { SOURCE_DATE_EPOCH: '17e8' }, args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/good:/vrift/x`], expect: () => /^vrift: reading SOURCE_DATE_EPOCH: "17e8" is not/ },
    { name: 'output directory missing', args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/good:/vrift/x`, '--output', `${b}/no-dir/out.tar`], expect: (b) => new RegExp(`writing ${b}/no-dir/out.tar: directory ${b}/no-dir does not exist`) },
    { name: 'output directory not writable', asNobody: true, args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/good:/vrift/x`, '--output', `${b}/out.tar`], expect: (b) => new RegExp(`writing ${b}/out.tar: directory ${b} is not writable by this user`) },
    { name: 'neither --load nor --output', exit: 2, noSinks: true, args: (b) => ['--base', `docker-archive:${b}/base.tar`, '--add', `${b}/good:/vrift/x`], expect: () => /^vrift: Say where the image goes: --load, --output <file.tar>, --push, or several\.$/ },
  ];

  test('a vrift base: an --add onto a destination the base already has is refused (merging: test/e2e/merge.test.ts)', () => {
    const r = vrift(['build', '--quiet', '--tag', BAD_TAG, '--load', '--output', path.join(bad, 'out.tar'), '--base', `docker-archive:${outTar}`, '--add', `${bad}/good:/vrift/python`], { env: env() });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^vrift: merging onto docker-archive:${outTar}: destination /vrift/python already exists in the base image's /vrift tree`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(path.join(bad, 'out.tar'))).toBe(false);
    expect(imageExists(BAD_TAG)).toBe(false);
  });

  test('--json: the error is also reported as {"outcome":"error"} on stdout', () => {
    const r = vrift(['build', '--quiet', '--json', '--tag', BAD_TAG, '--output', path.join(bad, 'out.tar'), '--base', `docker-archive:${bad}/base.tar`, '--add', `${bad}/nope:/vrift/x`], { env: env() });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ outcome: 'error', message: expect.stringMatching(/^adding .*\/nope: no such directory/) });
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  test.each(cases)('$name', (c) => {
    const out = path.join(bad, c.asNobody ? 'nobody-out' : '', 'out.tar');
    const args = ['build', '--quiet', '--tag', BAD_TAG, '--cache-dir', path.join(bad, 'cache'), ...c.args(bad)];
    // uid 65534 cannot use the engine socket, and --load asks the engine before any work: --output only.
    if (!c.noSinks) args.push(...(c.asNobody ? [] : ['--load']), ...(args.includes('--output') ? [] : ['--output', out]));
    const r = vrift(args, { env: env(c.env ?? {}), ...(c.asNobody ? { uid: 65534, gid: 65534 } : {}) });
    expect(r.status).not.toBe(0);
    if (c.exit !== undefined) expect(r.status).toBe(c.exit);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(c.expect(bad));
    expect(r.stdout).toBe('');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(path.dirname(out)).filter((f) => f.includes('vrift-tmp'))).toEqual([]);
    expect(imageExists(BAD_TAG)).toBe(false);
  });
});
