/**
 * Building on a base that already carries a vrift tree (issue 5, item 4), on
 * the real engine: A = base + --add x, B = A + --add y. In B's containers
 * `vrift verify` passes, the shim serves stats for both trees (strace), and
 * the stat values equal the kernel's; the shim layer is not added twice.
 * A's tree has names that are not valid UTF-8: the merge reads the base's
 * layer names as bytes, so B's blob covers them and verify passes.
 * Conflicting destinations, a base whose /vrift drifted (a path added, or
 * a file rewritten in place) and a base whose blob a later layer deleted
 * are refused. Destinations with whitespace are
 * JSON-quoted in the base's history and read back exactly (overlaps judged
 * on the whole name).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, promises as fsp, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { classicBuild, nodeMounts } from '../verify/fixture';
import { BASE_IMAGE, ROOT, imageExists, requireEnvironment, vrift } from './helpers';

jest.setTimeout(300_000);

const A = `vrift-merge/a:${process.pid}`;
const B = `vrift-merge/b:${process.pid}`;
const BAD = `vrift-merge/bad:${process.pid}`;
const DRIFT = `vrift-merge/drift:${process.pid}`;
const PREVRIFT = `vrift-merge/prevrift:${process.pid}`;
const RMBLOB = `vrift-merge/rmblob:${process.pid}`;
const REWRITE = `vrift-merge/rewrite:${process.pid}`;
const SP = `vrift-merge/sp:${process.pid}`;
let work: string;
let a: Summary;
let b: Summary;
let bLog: string;

interface Summary {
  blobDigest: string;
  layers: { role: string; digest: string; diffID: string }[];
  stats: { files: number; dirs: number; symlinks: number; casObjects: number };
}

function env(): NodeJS.ProcessEnv {
  const e = { ...process.env };
  delete e.SOURCE_DATE_EPOCH;
  return e;
}

/** Names that are not valid UTF-8 (Latin-1 bytes): tar-stream would read their PAX records as U+FFFD. */
const RAW = { file: 'caf\xe9.py', dir: 'd\xff', inDir: 'n\xe4me', link: 'l\xe9nk' } as const;
const raw = (...parts: string[]): Buffer => Buffer.from(path.join(...parts), 'latin1');

function tree(name: string, prefix: string, nonUtf8 = false): string {
  const d = path.join(work, name);
  mkdirSync(path.join(d, 'lib', 'sub'), { recursive: true });
  for (let i = 0; i < 40; i++) writeFileSync(path.join(d, 'lib', `${prefix}${i}.py`), `V = ${i}\n`);
  writeFileSync(path.join(d, 'lib', 'sub', '__init__.py'), ''); // same content in both trees: same CAS object
  writeFileSync(path.join(d, 'lib', 'shared.txt'), 'shared\n');
  if (nonUtf8) {
    writeFileSync(raw(d, 'lib', RAW.file), 'CAFE = 1\n');
    mkdirSync(raw(d, 'lib', RAW.dir));
    writeFileSync(raw(d, 'lib', RAW.dir, RAW.inDir), 'raw\n');
    symlinkSync(Buffer.from(RAW.file, 'latin1'), raw(d, 'lib', RAW.link));
  }
  return d;
}

function docker(args: string[], image: string, cmd: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('docker', ['run', '--rm', '--network', 'none', ...nodeMounts(ROOT), '-v', `${work}/scripts:/scripts`, ...args, image, ...cmd], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  requireEnvironment();
  work = mkdtempSync(path.join(os.tmpdir(), 'vrift-merge-'));
  chmodSync(work, 0o755);
  mkdirSync(path.join(work, 'scripts'), { mode: 0o777 });
  chmodSync(path.join(work, 'scripts'), 0o777);
  const x = tree('x', 'a', true);
  const y = tree('y', 'b');
  const ra = vrift(['build', '--base', BASE_IMAGE, '--add', `${x}:/vrift/x`, '--tag', A, '--load', '--json', '--quiet', '--cache-dir', path.join(work, 'cache')], { env: env() });
  if (ra.status !== 0) throw new Error(`build A failed: ${ra.stderr}`);
  a = JSON.parse(ra.stdout) as Summary;
  const rb = vrift(['build', '--base', `docker-daemon:${A}`, '--add', `${y}:/vrift/y`, '--tag', B, '--load', '--json', '--cache-dir', path.join(work, 'cache')], { env: env() });
  if (rb.status !== 0) throw new Error(`build B failed: ${rb.stderr}`);
  b = JSON.parse(rb.stdout) as Summary;
  bLog = rb.stderr;
});

afterAll(async () => {
  for (const t of [A, B, BAD, DRIFT, PREVRIFT, RMBLOB, REWRITE, SP]) spawnSync('docker', ['rmi', '-f', t], { stdio: 'ignore' });
  if (work) await fsp.rm(work, { recursive: true, force: true });
});

test('B = A + one tree layer: the shim layer is not added again, the new blob replaces the old one', () => {
  expect(b.layers.slice(0, -1).map((l) => l.diffID)).toEqual(a.layers.map((l) => l.diffID));
  expect(b.layers[b.layers.length - 1].role).toBe('vrift');
  expect(bLog).toMatch(/base carries a vrift tree .*: merging/);
  expect(bLog).toMatch(/the base already has this shim layer; not adding it again/);
  expect(b.blobDigest).not.toBe(a.blobDigest);
  const r = vrift(['inspect', `docker-daemon:${B}`, '--json']);
  expect(r.status).toBe(0);
  const rep = JSON.parse(r.stdout);
  expect(rep.layers.map((l: { role: string }) => l.role).filter((x: string) => x === 'shim')).toHaveLength(1);
  expect(rep.blob.digest).toBe(b.blobDigest);
  expect(rep.blob.labelMatches).toBe(true);
  expect(rep.blob.layer).toBe(rep.layers.length - 1);
  // The union: both trees' files.
  expect(rep.blob.files).toBe(a.stats.files + b.stats.files);
  // 42 contents in both trees (B's layer writes them again, shadowing A's) + 2 only in A's non-UTF-8 files.
  expect(rep.blob.casObjects).toBe(44);
});

test('in B: verify passes (exit 0) over both trees', () => {
  const r = docker([], B, ['node', '/opt/vrift/bin/vrift.js', 'verify', '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const rep = JSON.parse(r.stdout);
  expect(rep.outcome).toBe('ok');
  expect(rep.mismatches).toEqual([]);
  expect(rep.checked.lstat).toBe(rep.entries);
});

test('in B: A\'s non-UTF-8 names are on disk byte for byte and in the blob verify checked', () => {
  const r = docker(['-e', 'LD_PRELOAD='], B, ['python3', '-c', `
import os
for d in (b'/vrift/x/lib', b'/vrift/x/lib/${RAW.dir.replace(/[\x80-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`)}'):
    print(' '.join(sorted(n.hex() for n in os.listdir(d) if not n.isascii())))
`]);
  expect(r.stderr).toBe('');
  const hex = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
  expect(r.stdout.trim().split('\n')).toEqual([[RAW.file, RAW.dir, RAW.link].map(hex).sort().join(' '), hex(RAW.inDir)]);
  const v = docker([], B, ['node', '/opt/vrift/bin/vrift.js', 'verify', '--json']);
  expect(v.status).toBe(0);
  const rep = JSON.parse(v.stdout);
  // Every on-disk /vrift path is a blob entry (none extra or missing), the 4 raw names included.
  expect([rep.missing, rep.extra, rep.mismatches]).toEqual([[], [], []]);
  expect(rep.entries).toBe(rep.checked.lstat);
});

test('in B: the shim serves stats of both trees (strace), with the kernel\'s values; merged directories pass through', () => {
  writeFileSync(path.join(work, 'scripts', 'st.py'), `
import os, json
out = {}
for top in ('/vrift/x', '/vrift/y'):
    for root, dirs, files in os.walk(top):
        for n in [root] + [os.path.join(root, f) for f in dirs + files]:
            for fn in (os.stat, os.lstat):
                s = fn(n)
                out[fn.__name__ + n] = [s.st_mode, s.st_nlink, s.st_uid, s.st_gid, s.st_size, s.st_blocks, s.st_mtime_ns]
for n in ('/vrift', '/vrift/.cas'):
    for fn in (os.stat, os.lstat):
        s = fn(n)
        out[fn.__name__ + n] = [s.st_mode, s.st_nlink, s.st_uid, s.st_gid, s.st_size, s.st_blocks, s.st_mtime_ns]
print(json.dumps(out, sort_keys=True))
`);
  const count = (name: string, extra: string[]) => {
    const r = docker(extra, B, ['strace', '-f', '-qq', '-o', `/scripts/${name}.trace`, '-e', 'trace=%%stat', 'python3', '/scripts/st.py']);
    expect(r.status).toBe(0);
    const lines = readFileSync(path.join(work, 'scripts', `${name}.trace`), 'utf8').split('\n');
    const merged = lines.filter((l) => l.includes('"/vrift"') || l.includes('"/vrift/.cas"')).length;
    return { out: r.stdout, x: lines.filter((l) => l.includes('"/vrift/x')).length, y: lines.filter((l) => l.includes('"/vrift/y')).length, merged };
  };
  const on = count('on', []);
  const off = count('off', ['-e', 'LD_PRELOAD=']);
  expect(off.x).toBeGreaterThan(80);
  expect(off.y).toBeGreaterThan(80);
  expect(on.x).toBe(0);
  expect(on.y).toBe(0);
  // Directories in both trees' layers (/vrift, /vrift/.cas): st_blocks depends on the engine,
  // so the blob flags them PSFS_E_UNCERTAIN and the shim passes their stats through.
  expect(on.merged).toBeGreaterThanOrEqual(4);
  expect(JSON.parse(on.out)).toEqual(JSON.parse(off.out));
});

test('conflicting destinations are refused with one clear line, nothing built', () => {
  const y = path.join(work, 'y');
  for (const [dest, re] of [
    ['/vrift/x', /^vrift: merging onto docker-daemon:.*: destination \/vrift\/x already exists in the base image's \/vrift tree; choose another destination/],
    ['/vrift/x/more', /^vrift: merging onto docker-daemon:.*: destination \/vrift\/x\/more overlaps \/vrift\/x, added by an earlier vrift build of the base/],
  ] as const) {
    const r = vrift(['build', '--quiet', '--base', `docker-daemon:${A}`, '--add', `${y}:${dest}`, '--tag', BAD, '--load'], { env: env() });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(re);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(imageExists(BAD)).toBe(false);
  }
});

test('a base with files under /vrift but no vrift blob is refused (the shim would hide them), nothing built', () => {
  const ctx = path.join(work, 'prevrift');
  mkdirSync(ctx);
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${BASE_IMAGE}\nRUN mkdir -p /vrift/y /vrift/other && echo old > /vrift/y/old.txt && echo o > /vrift/other/f\n`);
  classicBuild(PREVRIFT, ctx);
  const r = vrift(['build', '--quiet', '--base', `docker-daemon:${PREVRIFT}`, '--add', `${path.join(work, 'y')}:/vrift/y`, '--tag', BAD, '--load'], { env: env() });
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/^vrift: building on docker-daemon:.*: the base already has 4 paths under \/vrift \(first: \/vrift\/other\) but no vrift blob; the shim would hide them/);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(imageExists(BAD)).toBe(false);
});

/** Image `tag` = A + one RUN step (built in context dir `name`), then `vrift build` onto it adding y as BAD. */
function buildOnRun(name: string, tag: string, run: string): ReturnType<typeof vrift> {
  const ctx = path.join(work, name);
  mkdirSync(ctx);
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${A}\nRUN ${run}\n`);
  classicBuild(tag, ctx);
  return vrift(['build', '--quiet', '--base', `docker-daemon:${tag}`, '--add', `${path.join(work, 'y')}:/vrift/y`, '--tag', BAD, '--load'], { env: env() });
}

test('a base whose /vrift was written after its blob (RUN step) is refused', () => {
  // LD_PRELOAD= : under the shim the write is refused with EROFS (docs/shim-safety.md section 6).
  const r = buildOnRun('drift', DRIFT, `LD_PRELOAD= sh -c 'echo x > /vrift/x/lib/late.txt'`);
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/^vrift: merging onto docker-daemon:.*: the base's \/vrift differs from its blob: 1 paths not in its blob \(first: \/vrift\/x\/lib\/late.txt\)/);
  expect(imageExists(BAD)).toBe(false);
});

test('a base whose RUN step rewrote a /vrift file in place (no path added or removed) is refused', () => {
  const r = buildOnRun('rewrite', REWRITE, `LD_PRELOAD= sh -c 'echo changed > /vrift/x/lib/a1.py'`);
  expect(r.status).toBe(1);
  // The RUN layer holds the rewritten file and its parent directories.
  expect(r.stderr).toBe(`vrift: merging onto docker-daemon:${REWRITE}: layer ${a.layers.length + 1} writes 4 /vrift paths after the blob in layer ${a.layers.length} was written, so the blob may not describe them (check with \`vrift verify\`); build from the original base\n`);
  expect(imageExists(BAD)).toBe(false);
});

test('a base whose blob a later layer removed (RUN rm: a whiteout) is refused, naming the layer; nothing built', () => {
  const r = buildOnRun('rmblob', RMBLOB, 'rm /usr/lib/vrift/psfs.blob');
  expect(r.status).toBe(1);
  expect(r.stderr).toBe(`vrift: merging onto docker-daemon:${RMBLOB}: layer ${a.layers.length + 1} removes /usr/lib/vrift/psfs.blob (usr/lib/vrift/.wh.psfs.blob) that layer ${a.layers.length} holds, so the base's /vrift has no PSFS blob; build from the base's original base (before the layer that removed it) with every --add at once\n`);
  expect(imageExists(BAD)).toBe(false);
});

describe('destinations with whitespace in the base\'s history (created_by quoting)', () => {
  const SPACE = '/vrift/a b';
  const NL = '/vrift/n\nl';
  beforeAll(() => {
    const s1 = tree('s1', 's');
    const r = vrift(['build', '--quiet', '--base', BASE_IMAGE, '--add', `${s1}:${SPACE}`, '--add', `${s1}:${NL}`, '--tag', SP, '--load', '--cache-dir', path.join(work, 'cache')], { env: env() });
    if (r.status !== 0) throw new Error(`build SP failed: ${r.stderr}`);
  });

  test('docker history shows them JSON-quoted', () => {
    const h = spawnSync('docker', ['history', '--no-trunc', '--format', '{{.CreatedBy}}', SP], { encoding: 'utf8' }).stdout;
    expect(h).toContain('vrift build --add "/vrift/a b" --add "/vrift/n\\nl"');
  });

  test('a destination beside them (/vrift/a/c) is merged, not refused as overlapping', () => {
    const out = path.join(work, 'sp2.tar');
    const r = vrift(['build', '--quiet', '--base', `docker-daemon:${SP}`, '--add', `${path.join(work, 'y')}:/vrift/a/c`, '--tag', BAD, '--output', out], { env: env() });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('destinations inside them are refused as overlapping, each named exactly', () => {
    for (const [dest, base] of [[`${SPACE}/c`, SPACE], [`${NL}/x`, NL]]) {
      const r = vrift(['build', '--quiet', '--base', `docker-daemon:${SP}`, '--add', `${path.join(work, 'y')}:${dest}`, '--tag', BAD, '--load'], { env: env() });
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`vrift: merging onto docker-daemon:${SP}: destination ${dest} overlaps ${base}, added by an earlier vrift build of the base; use a destination that neither contains nor lies inside ${base}\n`);
      expect(imageExists(BAD)).toBe(false);
    }
  });
});
