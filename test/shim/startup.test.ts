/**
 * Start-up of the shim (docs/shim-safety.md section 1): on glibc the
 * constructor allocates nothing. Every dlsym/dlvsym lookup it makes
 * succeeds there (a failed one formats a malloc'd dlerror message, and the
 * first one also sets up malloc), and AT_SECURE comes from getauxval. The
 * same run shows the blob was accepted (a canary st_size answered from
 * it), so every start-up check ran, the mount scan included.
 * build/malloccount.so, preloaded after the shim, counts malloc-family
 * calls from its own load on, before any constructor runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import * as F from '../../src/blob/format';
import { MALLOCCOUNT, SHIM, buildShim, entryOffset } from './helpers';

let tmp: string;
let dom: string;
let blob: string;
let prog: string;

// Prints "<malloc calls before main> <st_size of argv[1] or errno>".
const PROG = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <sys/stat.h>
int main(int argc, char **argv)
{
	unsigned long (*get)(void) = (unsigned long (*)(void))dlsym(RTLD_DEFAULT, "malloccount_get");
	unsigned long n = get ? get() : 999999;
	struct stat st;
	if (argc < 2 || stat(argv[1], &st) != 0)
		return 2;
	printf("%lu %lld\\n", n, (long long)st.st_size);
	return 0;
}
`;

// A constructor with one lookup that fails (what the shim did for __fxstatat until e7bdf1f).
// The result is stored: as a tail call, RTLD_NEXT would be relative to ld.so's caller.
const FAILING_LOOKUP = `
#define _GNU_SOURCE
#include <dlfcn.h>
void *volatile sink;
__attribute__((constructor)) static void init(void) { sink = dlvsym(RTLD_NEXT, "__fxstatat", "GLIBC_2.2.5"); }
`;

function run(preload: string[]): string {
  const r = spawnSync(prog, [path.join(dom, 'small')], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, LD_PRELOAD: preload.join(' '), VRIFT_BLOB: blob },
  });
  if (r.status !== 0) throw new Error(`probe failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

beforeAll(async () => {
  buildShim();
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-startup-')));
  fs.chmodSync(tmp, 0o755);
  dom = path.join(tmp, 'dom');
  fs.mkdirSync(path.join(dom, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dom, 'small'), 'x'.repeat(10));
  const b = encodeBlob(await scanHostTree(dom));
  b.writeBigUInt64LE(999_999n, entryOffset(b, Buffer.from(path.join(dom, 'small'))) + F.ENTRY.size);
  blob = path.join(tmp, 'canary.blob');
  fs.writeFileSync(blob, b, { mode: 0o644 });
  fs.writeFileSync(path.join(tmp, 'prog.c'), PROG);
  fs.writeFileSync(path.join(tmp, 'failing.c'), FAILING_LOOKUP);
  prog = path.join(tmp, 'prog');
  execFileSync('cc', ['-O2', '-o', prog, path.join(tmp, 'prog.c'), '-ldl']);
  execFileSync('cc', ['-O2', '-shared', '-fPIC', '-o', path.join(tmp, 'failing.so'), path.join(tmp, 'failing.c'), '-ldl']);
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('control: the counter sees a failed lookup in a constructor (its dlerror message is malloc\'d)', () => {
  const [n, size] = run([path.join(tmp, 'failing.so'), MALLOCCOUNT]).split(' ');
  expect(Number(n)).toBeGreaterThan(0);
  expect(size).toBe('10');
});

test('the shim\'s constructor accepts the blob and makes no malloc-family call (glibc)', () => {
  expect(run([MALLOCCOUNT])).toBe('0 10');
  expect(run([SHIM, MALLOCCOUNT])).toBe('0 999999');
});
