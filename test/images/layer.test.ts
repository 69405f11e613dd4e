/**
 * `vrift layer` and `vrift blob --image-mode` on the host, through the real
 * CLI: the directory `vrift layer` writes is what its own blob describes
 * (`vrift verify --root` against the kernel), hardlinks into /vrift/.cas,
 * owners, permission bits; `vrift blob --image-mode` over that tree is
 * byte-identical to the static `vrift-mkblob --identity synthetic` (the two
 * regeneration paths of docs/integrations/docker-build.md); bad output
 * directories are refused and nothing is left behind.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeBlob } from '../../src/blob/reader';
import { H_CHECK_ROOT_MTIME, H_DEV_RUNTIME } from '../../src/blob/format';
import { SYNTHETIC_INO_BASE } from '../../src/tree';
import { CLI, ROOT, sh } from './helpers';

const MKBLOB = path.join(ROOT, 'shim', 'build', 'vrift-mkblob');

function vrift(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: '' } });
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

describe('vrift layer (host)', () => {
  let dir: string;
  let out: string;

  beforeAll(() => {
    sh('npx', ['tsc', '-p', path.join(ROOT, 'tsconfig.json')]);
    if (!existsSync(MKBLOB)) sh('make', ['-C', path.join(ROOT, 'shim')]);
    dir = mkdtempSync(path.join(os.tmpdir(), 'vrift-layer-'));
    const src = path.join(dir, 'src');
    mkdirSync(path.join(src, 'pkg', 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'pkg', 'a.py'), 'same\n');
    writeFileSync(path.join(src, 'pkg', 'b.py'), 'same\n');
    writeFileSync(path.join(src, 'pkg', 'sub', 'tool'), '#!/bin/sh\n');
    chmodSync(path.join(src, 'pkg', 'sub', 'tool'), 0o4755);
    linkSync(path.join(src, 'pkg', 'sub', 'tool'), path.join(src, 'pkg', 'tool2'));
    symlinkSync('a.py', path.join(src, 'pkg', 'link'));
    out = path.join(dir, 'out');
    const r = vrift(['layer', '--add', `${src}:/vrift/py`, '--chown', '1000:1001', '--out-dir', out, '--json']);
    expect(r.stderr).toMatch(/layer: 4 files, /);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'written', outDir: out, files: 4, symlinks: 1, casObjects: 2 });
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('writes tree/vrift and lib/{psfs.blob,libvrift.so,vrift-mkblob}; CAS hardlinks, owner, set-uid kept', () => {
    expect(readdirSync(out).sort()).toEqual(['lib', 'tree']);
    expect(readdirSync(path.join(out, 'lib')).sort()).toEqual(['libvrift.so', 'psfs.blob', 'vrift-mkblob']);
    const t = (p: string) => lstatSync(path.join(out, 'tree', p));
    expect(t('vrift/py/pkg/a.py').ino).toBe(t('vrift/py/pkg/b.py').ino);
    expect(t('vrift/py/pkg/a.py').nlink).toBe(3);
    expect(t('vrift/py/pkg/sub/tool').ino).toBe(t('vrift/py/pkg/tool2').ino);
    expect(t('vrift/py/pkg/sub/tool').mode).toBe(0o104755);
    expect([t('vrift/py/pkg/a.py').uid, t('vrift/py/pkg/a.py').gid]).toEqual([1000, 1001]);
    expect(t('vrift/py/pkg/link').isSymbolicLink()).toBe(true);
    expect(t('vrift').mtimeMs % 1000).toBe(0);
  });

  test("its blob describes the directory written: vrift verify --root against the kernel's lstat", () => {
    const blob = decodeBlob(readFileSync(path.join(out, 'lib', 'psfs.blob')));
    expect(blob.header.flags).toBe(H_DEV_RUNTIME | H_CHECK_ROOT_MTIME);
    const r = vrift(['verify', '--root', path.join(out, 'tree'), '--blob', path.join(out, 'lib', 'psfs.blob')]);
    expect(r.stdout).toMatch(/verify: OK/);
    expect(r.status).toBe(0);
  });

  test('vrift blob --image-mode == vrift-mkblob --identity synthetic, byte for byte', () => {
    const js = path.join(dir, 'js.blob');
    const c = path.join(dir, 'c.blob');
    const r = vrift(['blob', path.join(out, 'tree', 'vrift'), '--image-mode', '-o', js]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).flags).toEqual(['PSFS_H_DEV_RUNTIME', 'PSFS_H_CHECK_ROOT_MTIME']);
    sh(MKBLOB, ['--root', path.join(out, 'tree', 'vrift'), '--blob', c, '--identity', 'synthetic', '--dev-runtime', '--check-root-mtime']);
    expect(readFileSync(js).equals(readFileSync(c))).toBe(true);
    const entries = decodeBlob(readFileSync(js)).entries;
    const byPath = new Map(entries.map((e) => [e.path.toString(), e]));
    const root = path.join(out, 'tree', 'vrift');
    expect(byPath.get(`${root}/py/pkg/a.py`)!.ino).toBe(byPath.get(`${root}/py/pkg/b.py`)!.ino);
    for (const e of entries) {
      expect(e.ino >= SYNTHETIC_INO_BASE).toBe(true);
      expect([e.atime, e.ctime]).toEqual([e.mtime, e.mtime]);
      expect(e.dev).toBe(0n);
    }
  });

  test('refuses a non-empty --out-dir and one inside a source; leaves nothing behind', () => {
    const full = path.join(dir, 'full');
    mkdirSync(full);
    writeFileSync(path.join(full, 'x'), '');
    let r = vrift(['layer', '--add', `${path.join(dir, 'src')}:/vrift/py`, '--out-dir', full]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/writing .*full: directory exists and is not empty; remove it or choose another --out-dir/);
    expect(readdirSync(full)).toEqual(['x']);
    r = vrift(['layer', '--add', `${path.join(dir, 'src')}:/vrift/py`, '--out-dir', path.join(dir, 'src', 'o')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/inside the source/);
    expect(existsSync(path.join(dir, 'src', 'o'))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('vrift-tmp'))).toEqual([]);
  });
});
