/**
 * `vrift blob` and `vrift shim-path` as a user runs them: the built CLI
 * (bin/vrift.js -> dist/, so `npm run build` first) in a child process.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { decodeBlob } from '../../src/blob/reader';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import * as F from '../../src/blob/format';

const PKG = path.join(__dirname, '..', '..');
const BIN = path.join(PKG, 'bin', 'vrift.js');

function vrift(args: string[], opts: { uid?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const cmd = opts.uid === undefined ? process.execPath : 'setpriv';
  const argv = opts.uid === undefined ? [BIN, ...args] : [`--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', process.execPath, BIN, ...args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, VRIFT_DEBUG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let tmp: string;
let tree: string;

beforeAll(() => {
  if (!fs.existsSync(path.join(PKG, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-cli-'));
  fs.chmodSync(tmp, 0o755);
  tree = path.join(tmp, 'tree');
  fs.mkdirSync(path.join(tree, 'a', 'b'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'a', 'f'), 'hello');
  fs.symlinkSync('a/f', path.join(tree, 'l'));
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('vrift blob', () => {
  test('writes the blob and prints one JSON summary line', async () => {
    const out = path.join(tmp, 'tree.psfs');
    const r = vrift(['blob', tree, '-o', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    const summary = JSON.parse(lines[0]);
    const bytes = fs.readFileSync(out);
    expect(summary).toEqual({
      outcome: 'written',
      file: out,
      entries: 5,
      size: bytes.length,
      digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
      root: fs.realpathSync(tree),
      flags: [],
    });
    const d = decodeBlob(bytes);
    expect(d.header.flags).toBe(0);
    expect(d.roots[0].toString()).toBe(fs.realpathSync(tree));
    // Same bytes the library produces for the same tree.
    expect(bytes.equals(encodeBlob(await scanHostTree(tree)))).toBe(true);
    expect(fs.statSync(out).mode & 0o777).toBe(0o644);
  });

  test('--uid/--gid and the header flags', () => {
    const out = path.join(tmp, 'flags.psfs');
    const r = vrift(['blob', tree, '--output', out, '--uid', '0', '--gid', '7', '--dev-runtime', '--check-root-mtime']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).flags).toEqual(['PSFS_H_DEV_RUNTIME', 'PSFS_H_CHECK_ROOT_MTIME']);
    const d = decodeBlob(fs.readFileSync(out));
    expect(d.header.flags).toBe(F.H_DEV_RUNTIME | F.H_CHECK_ROOT_MTIME);
    expect(d.entries.every((e) => e.uid === 0 && e.gid === 7)).toBe(true);
  });

  test('missing directory: non-zero exit, exactly one line on stderr, nothing on stdout, no output file', () => {
    const out = path.join(tmp, 'missing.psfs');
    const r = vrift(['blob', path.join(tmp, 'nope'), '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^vrift: scanning host tree ".*nope": ENOENT \(no such file or directory\); pass an existing directory\n$/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('missing'))).toEqual([]);
  });

  test('a file instead of a directory: non-zero exit, one line, no output file', () => {
    const out = path.join(tmp, 'file.psfs');
    const r = vrift(['blob', path.join(tree, 'a', 'f'), '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.split('\n')).toEqual([expect.stringMatching(/^vrift: scanning host tree .*: not a directory; /), '']);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('unreadable directory (run as nobody): non-zero exit, one line naming it, no output file, old file kept', () => {
    const locked = path.join(tree, 'locked');
    fs.mkdirSync(locked);
    fs.chmodSync(locked, 0o311);
    const outDir = path.join(tmp, 'out');
    fs.mkdirSync(outDir);
    fs.chmodSync(outDir, 0o777);
    const out = path.join(outDir, 'locked.psfs');
    fs.writeFileSync(out, 'previous');
    try {
      const r = vrift(['blob', tree, '-o', out], { uid: 65534 });
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`vrift: reading directory ${JSON.stringify(locked)}: EACCES (permission denied); run as a user who can read it, or make it readable (chmod a+rx)\n`);
      expect(fs.readFileSync(out, 'utf8')).toBe('previous');
      expect(fs.readdirSync(outDir)).toEqual(['locked.psfs']);
    } finally {
      fs.rmdirSync(locked);
    }
  });

  test('an output file inside the scanned tree is refused (it would make the blob stale)', () => {
    for (const out of [path.join(tree, 'in.psfs'), path.join(tree, 'a', 'b', 'in.psfs')]) {
      const r = vrift(['blob', tree, '-o', out]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/^vrift: writing PSFS blob .*in\.psfs: the file would be inside the tree it describes .*; write it outside that directory\n$/);
      expect(fs.existsSync(out)).toBe(false);
    }
  });

  test('usage errors exit 2 with one line', () => {
    const noOut = vrift(['blob', tree]);
    expect(noOut.status).toBe(2);
    expect(noOut.stderr).toBe('vrift: Missing required argument: output\n');
    const badUid = vrift(['blob', tree, '-o', path.join(tmp, 'x.psfs'), '--uid', 'abc']);
    expect(badUid.status).toBe(2);
    expect(badUid.stderr.split('\n')).toHaveLength(2);
    expect(fs.existsSync(path.join(tmp, 'x.psfs'))).toBe(false);
    for (const uid of ['-5', '4294967295', '1.5']) {
      const r = vrift(['blob', tree, '-o', path.join(tmp, 'x.psfs'), '--uid', uid]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/^vrift: writing PSFS blob: --uid must be an integer 0\.\.4294967294, got .*\n$/);
    }
    // The output: a directory, or in a directory that does not exist.
    const isDir = vrift(['blob', tree, '-o', tmp]);
    expect(isDir.status).toBe(2);
    expect(isDir.stderr).toMatch(/^vrift: writing PSFS blob .*: it is a directory; name a file, e\.g\. .*psfs\.blob\n$/);
    const noDir = vrift(['blob', tree, '-o', path.join(tmp, 'nope', 'x.psfs')]);
    expect(noDir.status).toBe(2);
    expect(noDir.stderr).toMatch(/^vrift: writing PSFS blob .*x\.psfs: directory .*nope does not exist; create it first\n$/);
    expect(fs.existsSync(path.join(tmp, 'nope'))).toBe(false);
  });

  test('--help shows the flags in kebab-case and examples', () => {
    const r = vrift(['blob', '--help']);
    expect(r.status).toBe(0);
    for (const s of ['--output', '--uid', '--gid', '--dev-runtime', '--check-root-mtime', 'Examples:']) expect(r.stdout).toContain(s);
  });
});

describe('vrift shim-path', () => {
  // A copy of the package (dist/ + bin/, node_modules linked) so that the
  // built / not built states can both be tested without touching shim/build.
  let pkg: string;
  beforeAll(() => {
    pkg = path.join(tmp, 'pkg');
    fs.mkdirSync(pkg);
    fs.cpSync(path.join(PKG, 'dist'), path.join(pkg, 'dist'), { recursive: true });
    fs.cpSync(path.join(PKG, 'bin'), path.join(pkg, 'bin'), { recursive: true });
    fs.symlinkSync(path.join(PKG, 'node_modules'), path.join(pkg, 'node_modules'));
  });
  const run = (): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [path.join(pkg, 'bin', 'vrift.js'), 'shim-path'], { encoding: 'utf8', cwd: os.tmpdir() });

  test('not built: exit 1, one line saying to run `npm run build`', () => {
    const r = run();
    const so = path.join(pkg, 'shim', 'build', 'libvrift.so');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`vrift: finding the shim: ${so} does not exist; run \`npm run build\` in ${pkg}\n`);
  });

  test('built: prints the absolute path of shim/build/libvrift.so under the package root', () => {
    const so = path.join(pkg, 'shim', 'build', 'libvrift.so');
    fs.mkdirSync(path.dirname(so), { recursive: true });
    fs.writeFileSync(so, '');
    const r = run();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${so}\n`);
  });

  test('the real package answers for its own shim/build', () => {
    const so = path.join(PKG, 'shim', 'build', 'libvrift.so');
    const r = vrift(['shim-path']);
    expect(r.status).toBe(fs.existsSync(so) ? 0 : 1);
    expect(r.status === 0 ? r.stdout : r.stderr).toContain(so);
  });
});
