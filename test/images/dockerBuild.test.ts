/**
 * The docker build recipe of docs/integrations/docker-build.md, built for real:
 * the Dockerfile block of the doc, verbatim, with the classic builder
 * (DOCKER_BUILDKIT=0, Docker 20.10), FROM the tool image built from the
 * top-level Dockerfile, onto the local bookworm + python3 base. The
 * dependency tree has the cases COPY could lose: dedup hardlinks, a set-uid
 * file, a 0700 directory, symlinks, an empty directory, sub-second mtimes, a
 * non-root owner (--chown 1000:1000).
 *
 * Checked in the final image: `vrift verify` of the running container's root
 * (host side, /proc/<pid>/root) passes with the regenerated blob; the kernel's
 * lstat shows what survived (owner, set-uid, hardlinks, whole-second mtimes);
 * the shim's answers equal the kernel's for every /vrift path (outside the
 * identity policy's st_ino/st_ctime) and strace counts no stat syscall on
 * /vrift paths with the shim. Control builds copy /vrift the wrong way
 * (`COPY .../vrift/ /vrift/`, which resets its mtime): without the recipe's
 * `RUN vrift-mkblob` verify fails and the shim passes through; with it both
 * pass (the regeneration repairs what COPY lost).
 *
 * Needs: dockerd, scripts/base-images.sh (run here), npm registry and Debian
 * mirror reachable from the host network on the first build (cached after).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeBlob } from '../../src/blob/reader';
import { SYNTHETIC_INO_BASE } from '../../src/tree';
import {
  CLI, KERNEL_FIELDS, LSTAT_PY, PYTHON_BASE, ROOT, TOOL_IMAGE, dockerBuild, ensureToolImage, inodeClasses, pick,
  removeContainer, run, sh, startContainer, straceCount, type StatMap,
} from './helpers';

jest.setTimeout(1_500_000); // beforeAll may build the tool image cold (~9 min)

const TAG = `vrift-test/recipe-app:${process.pid}`;
const STAGE1 = `vrift-test/recipe-stage1:${process.pid}`;
const BAD_TAG = `vrift-test/recipe-bad:${process.pid}`;
const N_MODULES = 150;

/** The ```dockerfile block that follows the recipe marker in the doc. */
function recipeFromDoc(): string {
  const doc = readFileSync(path.join(ROOT, 'docs', 'integrations', 'docker-build.md'), 'utf8');
  const i = doc.indexOf('<!-- recipe:');
  const m = /```dockerfile\n([\s\S]*?)```/.exec(doc.slice(i));
  if (i < 0 || !m) throw new Error('docs/integrations/docker-build.md has no recipe block');
  return m[1];
}

/** deps/: a small package with every case the docker build path could lose. */
function makeDeps(dir: string): void {
  const pkg = path.join(dir, 'deps', 'pkg');
  mkdirSync(path.join(pkg, 'sub'), { recursive: true });
  writeFileSync(path.join(pkg, '__init__.py'), 'from . import mod0\nVALUE = 42\n');
  for (let i = 0; i < N_MODULES; i++) {
    // Every third module has the same bytes: one CAS object, several hardlinks.
    writeFileSync(path.join(pkg, `mod${i}.py`), i % 3 === 0 ? 'SHARED = True\n' : `X = ${i}\n`);
  }
  writeFileSync(path.join(pkg, 'sub', '__init__.py'), '');
  writeFileSync(path.join(pkg, 'tool.sh'), '#!/bin/sh\necho tool\n');
  chmodSync(path.join(pkg, 'tool.sh'), 0o4755);
  mkdirSync(path.join(pkg, 'private'));
  writeFileSync(path.join(pkg, 'private', 'key'), 'secret\n');
  chmodSync(path.join(pkg, 'private', 'key'), 0o600);
  chmodSync(path.join(pkg, 'private'), 0o700);
  mkdirSync(path.join(pkg, 'empty'));
  symlinkSync('mod1.py', path.join(pkg, 'alias.py'));
  symlinkSync('../pkg/sub', path.join(pkg, 'sublink'));
  linkSync(path.join(pkg, 'mod1.py'), path.join(pkg, 'hard1.py'));
  utimesSync(path.join(pkg, 'mod2.py'), 1700000000.987654, 1700000000.987654);
}

function lstatAll(image: string, env: string[]): StatMap {
  const args = ['run', '--rm', '--network', 'none'];
  for (const e of env) args.push('-e', e);
  return JSON.parse(sh('docker', [...args, image, 'python3', '-c', LSTAT_PY, '/vrift'])) as StatMap;
}

/** Whether some directory between /vrift and p's parent lacks search permission for all (0111). */
function unreachable(p: string, m: StatMap): boolean {
  for (let d = path.posix.dirname(p); d.startsWith('/vrift'); d = path.posix.dirname(d)) {
    if ((Number(m[d].st_mode) & 0o111) !== 0o111) return true;
  }
  return false;
}

function verify(pid: number, blob?: string): { status: number | null; out: string } {
  const r = run(process.execPath, [CLI, 'verify', '--root', `/proc/${pid}/root`, ...(blob ? ['--blob', blob] : [])]);
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('docker build recipe (docs/integrations/docker-build.md)', () => {
  let ctx: string;
  let cid: string | undefined;
  let pid: number;
  let shimOn: StatMap;
  let kernel: StatMap;

  beforeAll(() => {
    ensureToolImage();
    ctx = mkdtempSync(path.join(os.tmpdir(), 'vrift-recipe-'));
    makeDeps(ctx);
    writeFileSync(path.join(ctx, 'Dockerfile'), recipeFromDoc());
    const args = { VRIFT_IMAGE: TOOL_IMAGE, BASE: PYTHON_BASE, VRIFT_CHOWN: '1000:1000' };
    dockerBuild(ctx, TAG, args);
    dockerBuild(ctx, STAGE1, args, { target: 'vrift' }); // cached: the stage-1 output for the blob comparison
    ({ id: cid, pid } = startContainer(TAG));
    kernel = lstatAll(TAG, ['LD_PRELOAD=']);
    shimOn = lstatAll(TAG, ['PYTHONPATH=/vrift/deps']);
  });

  afterAll(() => {
    if (cid) removeContainer(cid);
    spawnSync('docker', ['rmi', '-f', TAG, STAGE1, BAD_TAG], { stdio: 'ignore' });
    if (ctx) rmSync(ctx, { recursive: true, force: true });
  });

  test('the recipe puts the tree, the shim, the regenerated blob and LD_PRELOAD into the image', () => {
    const env = JSON.parse(sh('docker', ['image', 'inspect', '-f', '{{json .Config.Env}}', TAG])) as string[];
    expect(env).toContain('LD_PRELOAD=/usr/lib/vrift/libvrift.so');
    const out = sh('docker', ['run', '--rm', '--network', 'none', '-e', 'PYTHONPATH=/vrift/deps', TAG,
      'python3', '-c', 'import pkg, pkg.mod149, pkg.sub; print(pkg.VALUE, pkg.mod149.X, pkg.__file__)']);
    expect(out.trim()).toBe('42 149 /vrift/deps/pkg/__init__.py');
    // 150 modules + __init__ + hard1 + alias + tool.sh + private/key + sub/__init__ ... all there.
    expect(Object.keys(kernel).filter((p) => p.startsWith('/vrift/deps/pkg/mod')).length).toBe(N_MODULES);
  });

  test('vrift verify passes on the running container (regenerated blob)', () => {
    const r = verify(pid);
    expect(r.out).toMatch(/verify: OK: every entry matches the kernel/);
    expect(r.status).toBe(0);
  });

  test("the stage-1 blob (vrift layer's own) also matches: whole-second mtimes survive COPY", () => {
    const file = path.join(ctx, 'stage1.blob');
    writeFileSync(file, Buffer.from(sh('docker', ['run', '--rm', '--network', 'none', '--entrypoint', 'base64', STAGE1, '-w0', '/out/lib/psfs.blob']), 'base64'));
    const blob = decodeBlob(readFileSync(file));
    expect(blob.entries.length).toBe(Object.keys(kernel).length);
    const r = verify(pid, file);
    expect(r.status).toBe(0);
  });

  test('what survived the docker build path, by the kernel: owner, set-uid, 0700, hardlinks, whole-second mtimes', () => {
    const paths = Object.keys(kernel);
    for (const p of paths) {
      expect([p, kernel[p].st_uid, kernel[p].st_gid]).toEqual([p, 1000, 1000]);
      expect([p, Number(kernel[p].st_mtime_ns) % 1e9]).toEqual([p, 0]);
    }
    // The build-context COPY (deps/ -> /in/deps/) drops S_ISUID before vrift sees the file
    // (measured, Docker 20.10 classic builder); COPY --from keeps what vrift wrote.
    expect(kernel['/vrift/deps/pkg/tool.sh'].st_mode).toBe(0o100755);
    expect(kernel['/vrift/deps/pkg/private'].st_mode).toBe(0o040700);
    expect(kernel['/vrift/deps/pkg/private/key'].st_mode).toBe(0o100600);
    expect(Number(kernel['/vrift/deps/pkg/alias.py'].st_mode) & 0o170000).toBe(0o120000);
    // mod0, mod3, ... share one CAS object: one inode, nlink = paths + 1 (the object).
    const same = paths.filter((p) => /\/mod\d+\.py$/.test(p) && Number(/mod(\d+)/.exec(p)![1]) % 3 === 0);
    expect(new Set(same.map((p) => kernel[p].st_ino)).size).toBe(1);
    expect(same.length).toBe(N_MODULES / 3);
    expect(kernel[same[0]].st_nlink).toBe(same.length + 1);
    // hard1.py and mod1.py: a hardlink in the source, one object (nlink: 2 paths + object).
    expect(kernel['/vrift/deps/pkg/hard1.py'].st_ino).toBe(kernel['/vrift/deps/pkg/mod1.py'].st_ino);
    expect(kernel['/vrift/deps/pkg/mod1.py'].st_nlink).toBe(3);
  });

  test("the shim answers every reachable /vrift lstat, equal to the kernel's (outside st_ino/st_ctime); below the 0700 directory the kernel answers", () => {
    expect(Object.keys(shimOn).sort()).toEqual(Object.keys(kernel).sort());
    expect(pick(shimOn, KERNEL_FIELDS)).toEqual(pick(kernel, KERNEL_FIELDS));
    // PSFS_E_REACHABLE (docs/psfs-format.md): a path below a directory without 0111 is
    // passed through (the kernel may answer EACCES to another caller): here private/key.
    const served = (m: StatMap): StatMap => Object.fromEntries(Object.entries(m).filter(([p]) => unreachable(p, kernel) === false));
    const passed = Object.keys(kernel).filter((p) => unreachable(p, kernel));
    expect(passed).toEqual(['/vrift/deps/pkg/private/key']);
    expect(inodeClasses(served(shimOn))).toEqual(inodeClasses(served(kernel)));
    // Synthetic st_ino (identity policy) on every served path: the shim answered, not the kernel.
    for (const [p, st] of Object.entries(served(shimOn))) expect([p, BigInt(st.st_ino) >= SYNTHETIC_INO_BASE]).toEqual([p, true]);
    for (const p of passed) expect(shimOn[p]).toEqual(kernel[p]);
  });

  test('strace: with the shim only the init root stat and the unreachable path reach the kernel; without it one per path', () => {
    const n = Object.keys(kernel).length;
    const cmd = ['python3', '-c', LSTAT_PY, '/vrift'];
    const on = straceCount(TAG, cmd);
    const off = straceCount(TAG, cmd, ['LD_PRELOAD=']);
    const offBlob = straceCount(TAG, cmd, ['VRIFT_BLOB=/nonexistent']);
    process.stderr.write(`recipe: lstat of ${n} /vrift paths: ${off.vrift} stat syscalls on /vrift without the shim, ${offBlob.vrift} with VRIFT_BLOB=/nonexistent, ${on.vrift} with it (all: ${off.all} -> ${on.all})\n${on.lines.join('\n')}\n`);
    expect(off.vrift).toBeGreaterThanOrEqual(n);
    expect(offBlob.vrift).toBeGreaterThanOrEqual(n);
    // Left with the shim: its init's real stat of the root (st_dev, root mtime check) and
    // the one path below the 0700 directory (not PSFS_E_REACHABLE: passed through).
    expect(on.lines.map((l) => /"(\/vrift[^"]*)"/.exec(l)?.[1])).toEqual(['/vrift', '/vrift/deps/pkg/private/key']);
    expect(on.vrift).toBe(2);
  });

  test('control: COPY <out>/tree/vrift/ /vrift/ resets /vrift\'s mtime; without RUN vrift-mkblob verify fails and the shim passes through, with it both pass', () => {
    const wrongCopy = recipeFromDoc().replace(/^COPY --from=vrift \/out\/tree\/ \/$/m, 'COPY --from=vrift /out/tree/vrift/ /vrift/');
    const noRegen = wrongCopy.replace(/^RUN \["\/usr\/lib\/vrift\/vrift-mkblob".*$/m, '');
    expect(wrongCopy).not.toBe(recipeFromDoc());
    expect(noRegen).not.toBe(wrongCopy);
    const args = { VRIFT_IMAGE: TOOL_IMAGE, BASE: PYTHON_BASE, VRIFT_CHOWN: '1000:1000' };
    const cmd = ['python3', '-c', LSTAT_PY, '/vrift'];
    const n = Object.keys(kernel).length;
    const results: Record<string, { verify: number | null; vrift: number }> = {};
    for (const [name, text] of [['noRegen', noRegen], ['wrongCopy', wrongCopy]] as const) {
      writeFileSync(path.join(ctx, `Dockerfile.${name}`), text);
      dockerBuild(ctx, BAD_TAG, args, { file: path.join(ctx, `Dockerfile.${name}`) });
      const c = startContainer(BAD_TAG);
      try {
        const r = verify(c.pid);
        if (name === 'noRegen') expect(r.out).toMatch(/\/vrift: .*mtime/);
        results[name] = { verify: r.status, vrift: straceCount(BAD_TAG, cmd).vrift };
      } finally {
        removeContainer(c.id);
      }
    }
    process.stderr.write(`recipe control: ${JSON.stringify(results)} (${n} paths)\n`);
    expect(results.noRegen.verify).toBe(3);
    expect(results.noRegen.vrift).toBeGreaterThanOrEqual(n); // blob rejected at init: every call passes through
    expect(results.wrongCopy.verify).toBe(0);
    expect(results.wrongCopy.vrift).toBe(2); // as in the recipe: init root stat + private/key
  });
});
