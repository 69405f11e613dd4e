/**
 * Argument checks of the CLI (src/cli/args.ts and their use in build, blob,
 * layer, inspect, verify): every malformed flag is one line on stderr and exit
 * 2, found before any work. The child-process cases run the built CLI
 * (bin/vrift.js -> dist/, so `npm run build` first); none needs an engine.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { checkSingleValues, oneLineUsage } from '../../src/cli/args';
import { checkCacheDir, checkTmpDir, parseAdds, refuseInsideSources } from '../../src/cli/commands/build';
import { asInspectError } from '../../src/cli/commands/inspect';
import { VriftError, EXIT } from '../../src/errors';
import { fixture, legacyArchive } from '../image/helpers';

const PKG = path.join(__dirname, '..', '..');
const BIN = path.join(PKG, 'bin', 'vrift.js');

function vrift(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, VRIFT_DEBUG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let tmp: string;
let src: string;

beforeAll(() => {
  if (!fs.existsSync(path.join(PKG, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-cli-args-'));
  src = path.join(tmp, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'x');
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('oneLineUsage', () => {
  test('yargs "Invalid values" becomes one line per option, joined', () => {
    expect(oneLineUsage('Invalid values:\n  Argument: compression, Given: "bogus", Choices: "gzip", "zstd"')).toBe(
      'parsing --compression "bogus": not one of "gzip", "zstd"; choose one of them',
    );
    const two = oneLineUsage('Invalid values:\n  Argument: compression, Given: "b", Choices: "gzip", "zstd"\n  Argument: format, Given: "x", Choices: "docker-archive", "oci"');
    expect(two.split('\n')).toHaveLength(1);
    expect(two).toContain('--compression "b"');
    expect(two).toContain('--format "x"');
  });
  test('other messages keep their words, on one line', () => {
    expect(oneLineUsage('Missing required argument: output')).toBe('Missing required argument: output');
    expect(oneLineUsage('a\n  b\n')).toBe('a b');
  });
});

describe('checkSingleValues', () => {
  test('an option given twice or empty is a usage error naming it', () => {
    expect(() => checkSingleValues({ output: ['a.tar', 'b.tar'] }, ['output'])).toThrow('parsing --output: given 2 times ("a.tar", "b.tar"); give it once');
    expect(() => checkSingleValues({ tag: '' }, ['tag'])).toThrow('parsing --tag: the value is empty');
    try {
      checkSingleValues({ tag: '' }, ['tag']);
    } catch (err) {
      expect((err as VriftError).exitCode).toBe(EXIT.usage);
    }
    expect(() => checkSingleValues({ output: 'a.tar', tag: undefined, load: true }, ['output', 'tag'])).not.toThrow();
  });
});

describe('parseAdds destinations and sources', () => {
  test('".." inside /vrift is named as such, not "outside /vrift"', async () => {
    await expect(parseAdds([`${src}:/vrift/a/../b`])).rejects.toThrow(`adding ${src}: destination /vrift/a/../b contains "..", which vrift does not resolve; write the path without it, e.g. /vrift/b`);
    await expect(parseAdds([`${src}:/vrift/../etc`])).rejects.toThrow(/destination \/vrift\/\.\.\/etc is outside \/vrift/);
  });
  test('a component over NAME_MAX (255 bytes) is refused before any work; 255 is fine', async () => {
    await expect(parseAdds([`${src}:/vrift/${'b'.repeat(256)}`])).rejects.toThrow(/has a 256-byte component, longer than NAME_MAX \(255 bytes\)/);
    // multi-byte: 128 x "é" = 256 bytes
    await expect(parseAdds([`${src}:/vrift/${'\u00e9'.repeat(128)}`])).rejects.toThrow(/has a 256-byte component/);
    expect(await parseAdds([`${src}:/vrift/${'b'.repeat(255)}`])).toEqual([{ src, dest: `/vrift/${'b'.repeat(255)}` }]);
  });
  test('argv that was not UTF-8 (U+FFFD after Node decoded it): destination refused, source explained', async () => {
    await expect(parseAdds([`${src}:/vrift/\uFFFD`])).rejects.toThrow(/the destination holds bytes that are not UTF-8/);
    const raw = Buffer.concat([Buffer.from(`${tmp}/nonutf`), Buffer.from([0xff])]);
    fs.mkdirSync(raw);
    // what Node's process.argv holds for that name
    const asArgv = raw.toString('utf8');
    expect(asArgv.endsWith('\uFFFD')).toBe(true);
    await expect(parseAdds([`${asArgv}:/vrift/x`])).rejects.toThrow(/no such directory, and the name holds bytes that are not UTF-8 .* symlink with a UTF-8 name/);
    // a plain missing directory keeps its short message
    await expect(parseAdds([`${tmp}/missing:/vrift/x`])).rejects.toThrow(`adding ${tmp}/missing: no such directory; check the path before :/vrift/x`);
  });
});

describe('refuseInsideSources', () => {
  test('an --output or --cache-dir inside an --add source is refused (also through a symlink, also when not there yet)', async () => {
    const adds = [{ src, dest: '/vrift/x' }];
    await expect(refuseInsideSources(adds, [['--output', `${src}/o.tar`]])).rejects.toThrow(`writing ${src}/o.tar: it is inside the source ${src} of --add ${src}:/vrift/x, so the next build would take it into the tree; give a --output outside every --add source`);
    await expect(refuseInsideSources(adds, [['--cache-dir', `${src}/new/cache`]])).rejects.toThrow(/give a --cache-dir outside every --add source/);
    await expect(refuseInsideSources(adds, [['--cache-dir', src]])).rejects.toThrow(/is inside the source/);
    const link = path.join(tmp, 'link');
    fs.symlinkSync(src, link);
    await expect(refuseInsideSources(adds, [['--output', `${link}/o.tar`]])).rejects.toThrow(/is inside the source/);
    await expect(refuseInsideSources([{ src: link, dest: '/vrift/x' }], [['--output', `${src}/o.tar`]])).rejects.toThrow(/is inside the source/);
    // next to the source, or a sibling whose name starts the same: fine
    await expect(refuseInsideSources(adds, [['--output', `${tmp}/o.tar`], ['--cache-dir', `${src}2/cache`], ['--output', undefined]])).resolves.toBeUndefined();
    fs.unlinkSync(link);
  });
});

describe('checkTmpDir', () => {
  test('a missing, non-directory or unwritable TMPDIR is one line naming it; a good one passes', async () => {
    await expect(checkTmpDir(`${tmp}/missing`)).rejects.toThrow(`creating the build's temp directory in ${tmp}/missing: no such directory; set TMPDIR to a writable directory`);
    await expect(checkTmpDir(`${src}/f`)).rejects.toThrow(/: not a directory; set TMPDIR/);
    await expect(checkTmpDir(tmp)).resolves.toBeUndefined();
  });
  test('TMPDIR that does not exist: the built CLI says so before any work (exit 1)', () => {
    const r = spawnSync(process.execPath, [BIN, 'build', '--base', 'docker-archive:/nonexistent.tar', '--add', `${src}:/vrift/x`, '--tag', 't:1', '--output', `${tmp}/o.tar`, '--quiet'], {
      encoding: 'utf8',
      env: { ...process.env, VRIFT_DEBUG: '', TMPDIR: `${tmp}/no-tmp` },
    });
    expect(r.stderr).toBe(`vrift: creating the build's temp directory in ${tmp}/no-tmp: no such directory; set TMPDIR to a writable directory (it holds the layers while they are written)\n`);
    expect(r.status).toBe(EXIT.failure);
  });
});

describe('TMPDIR inside a source', () => {
  test('build and layer refuse it before any work (exit 2): the build\'s temp files would land in the tree', () => {
    fs.mkdirSync(`${src}/tmp`, { recursive: true });
    for (const args of [
      ['build', '--base', 'docker-archive:/nonexistent.tar', '--add', `${src}:/vrift/x`, '--tag', 't:1', '--output', `${tmp}/o.tar`, '--quiet'],
      ['layer', '--add', `${src}:/vrift/x`, '--out-dir', `${tmp}/lo`],
    ]) {
      const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, VRIFT_DEBUG: '', TMPDIR: `${src}/tmp` } });
      expect(r.stderr).toBe(`vrift: writing ${src}/tmp: it is inside the source ${src} of --add ${src}:/vrift/x, so the next build would take it into the tree; give a TMPDIR outside every --add source\n`);
      expect(r.status).toBe(EXIT.usage);
    }
    expect(fs.readdirSync(`${src}/tmp`)).toEqual([]);
  });
});

describe('checkCacheDir', () => {
  test('a file, or a path through a file, is refused up front; a missing directory under a writable one and an existing one pass', async () => {
    await expect(checkCacheDir(`${src}/f`)).rejects.toThrow(`opening the digest cache ${src}/f: ${src}/f is not a directory; pass --cache-dir <a directory you can write>`);
    await expect(checkCacheDir(`${src}/f/sub`)).rejects.toThrow(`a component of ${src}/f/sub is not a directory`);
    await expect(checkCacheDir(`${tmp}/new/cache`)).resolves.toBeUndefined();
    await expect(checkCacheDir(tmp)).resolves.toBeUndefined();
    expect(fs.existsSync(`${tmp}/new`)).toBe(false); // checking creates nothing
  });
  test('as uid 65534: a default cache it cannot reach fails before any work, naming it and what to do', () => {
    const closed = path.join(tmp, 'closed');
    fs.mkdirSync(closed, { mode: 0o700 });
    fs.chmodSync(tmp, 0o755);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'build', '--base', 'docker-archive:/nonexistent.tar', '--add', `${src}:/vrift/x`, '--tag', 't:1', '--output', `${tmp}/o.tar`, '--quiet'], {
      encoding: 'utf8',
      env: { ...process.env, VRIFT_DEBUG: '', XDG_CACHE_HOME: path.join(closed, 'xdg') },
    });
    expect(r.stderr).toBe(`vrift: opening the digest cache ${closed}/xdg/vrift: ${closed}/xdg/vrift cannot be reached by this user (EACCES); pass --cache-dir <a directory you can write> (or set XDG_CACHE_HOME)\n`);
    expect(r.status).toBe(EXIT.failure);
  });
  test('as uid 65534: an existing cache directory it cannot write is one warning line, and the build succeeds (exit 0, image written)', async () => {
    const work = path.join(tmp, 'ro-cache');
    const w = path.join(work, 'w');
    const cache = path.join(work, 'cache');
    fs.mkdirSync(w, { recursive: true });
    fs.mkdirSync(cache, { mode: 0o755 }); // root's, not writable by 65534
    fs.chmodSync(tmp, 0o755);
    fs.chmodSync(work, 0o755);
    fs.chmodSync(w, 0o777);
    fs.chmodSync(src, 0o755);
    fs.utimesSync(path.join(src, 'f'), 500, 500); // not racy: it is to be recorded
    await legacyArchive(await fixture(), path.join(w, 'base.tar'));
    fs.chmodSync(path.join(w, 'base.tar'), 0o644);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'build', '--base', `docker-archive:${w}/base.tar`, '--add', `${src}:/vrift/x`, '--tag', 't:1', '--output', `${w}/o.tar`, '--cache-dir', cache, '--quiet'], {
      encoding: 'utf8',
      env: { ...process.env, VRIFT_DEBUG: '', TMPDIR: w },
    });
    expect(r.stderr).toBe(`vrift: warning: writing digest cache ${cache}/digests-v2: permission denied (EACCES); the build goes on without saving it (fix the permissions or pass --cache-dir <a directory you can write>)\n`);
    expect(r.status).toBe(0);
    expect(fs.statSync(`${w}/o.tar`).size).toBeGreaterThan(0);
    expect(fs.readdirSync(cache)).toEqual([]);
  });
});

describe('asInspectError', () => {
  test('the readers\' --build wording is made inspect wording, exit code kept', () => {
    const e = asInspectError(new VriftError('reading base image nosuch:1: the local engine has no such image; build it. A plain --base reference without a registry host means the local engine', { exitCode: 1 }));
    expect((e as VriftError).message).toBe('reading image nosuch:1: the local engine has no such image; build it. A plain reference without a registry host means the local engine');
    expect((e as VriftError).exitCode).toBe(1);
    expect((asInspectError(new VriftError('parsing --base "": not a valid reference')) as Error).message).toBe('parsing image "": not a valid reference');
    const other = new VriftError('inspecting x: no vrift layers');
    expect(asInspectError(other)).toBe(other);
  });
});

describe('the built CLI: one line, exit 2, nothing built', () => {
  const base = () => ['build', '--base', `docker-archive:${tmp}/nosuch.tar`, '--add', `${src}:/vrift/x`, '--quiet'];
  const cases: { name: string; args: () => string[]; err: RegExp }[] = [
    { name: '--compression bogus', args: () => [...base(), '--tag', 't:1', '--output', `${tmp}/o.tar`, '--compression', 'bogus'], err: /^vrift: parsing --compression "bogus": not one of "gzip", "zstd"; choose one of them\n$/ },
    { name: '--output twice', args: () => [...base(), '--tag', 't:1', '--output', `${tmp}/o.tar`, '--output', `${tmp}/p.tar`], err: /^vrift: parsing --output: given 2 times .*; give it once\n$/ },
    { name: '--tag twice', args: () => [...base(), '--tag', 't:1', '--tag', 't:2', '--output', `${tmp}/o.tar`], err: /^vrift: parsing --tag: given 2 times \("t:1", "t:2"\); give it once\n$/ },
    { name: '--output empty', args: () => [...base(), '--tag', 't:1', '--output', ''], err: /^vrift: parsing --output: the value is empty; give one after --output\n$/ },
    { name: '--output without a value', args: () => [...base(), '--tag', 't:1', '--output', '--load'], err: /^vrift: Not enough arguments following: output\n$/ },
    { name: '--compression twice', args: () => [...base(), '--tag', 't:1', '--output', `${tmp}/o.tar`, '--compression', 'gzip', '--compression', 'zstd'], err: /^vrift: parsing --compression: given 2 times/ },
    { name: 'non-UTF-8 destination', args: () => ['build', '--base', 'x', '--add', `${src}:/vrift/\uFFFD`, '--tag', 't:1', '--output', `${tmp}/o.tar`], err: /^vrift: parsing arguments: ".*:\/vrift\/\uFFFD" holds bytes that are not UTF-8 .*; use a UTF-8 name \(an existing directory can be given through a symlink with one\)\n$/ },
    { name: 'non-UTF-8 blob output (would have written another file name)', args: () => ['blob', src, '-o', `${tmp}/x\uFFFD.psfs`], err: /^vrift: parsing arguments: .* holds bytes that are not UTF-8/ },
    { name: 'blob -o twice', args: () => ['blob', src, '-o', `${tmp}/a.psfs`, '-o', `${tmp}/b.psfs`], err: /^vrift: parsing --output: given 2 times/ },
    { name: 'verify --root twice', args: () => ['verify', '--root', '/', '--root', tmp], err: /^vrift: parsing --root: given 2 times/ },
    { name: 'layer --out-dir empty', args: () => ['layer', '--add', `${src}:/vrift/x`, '--out-dir', ''], err: /^vrift: parsing --out-dir: the value is empty/ },
  ];
  test.each(cases)('$name', ({ args, err }) => {
    const r = vrift(args());
    expect(r.stderr).toMatch(err);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.status).toBe(EXIT.usage);
    for (const out of ['o.tar', 'p.tar', 'a.psfs', 'b.psfs']) expect(fs.existsSync(path.join(tmp, out))).toBe(false);
  });

  test('verify --root of a missing directory says so (exit 1)', () => {
    const r = vrift(['verify', '--root', `${tmp}/missing`]);
    expect(r.stderr).toBe(`vrift: verifying ${tmp}/missing: no such directory; --root takes an unpacked image rootfs\n`);
    expect(r.status).toBe(EXIT.failure);
  });

  test('inspect of a missing archive names an image, not a base', () => {
    const r = vrift(['inspect', `docker-archive:${tmp}/nosuch.tar`, '--json']);
    expect(r.stderr).toMatch(/^vrift: reading image docker-archive:.*nosuch\.tar: .*no such file or directory/);
    expect(r.stderr).not.toMatch(/base/);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'error' });
    expect(r.status).toBe(EXIT.failure);
    const empty = vrift(['inspect', '']);
    expect(empty.stderr).toMatch(/^vrift: parsing image "": not a valid reference/);
  });
});
