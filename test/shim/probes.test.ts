/**
 * Existence probes answered from the blob (issue 7 item 6): under strace,
 * read-only open() of missing domain paths and access(F_OK) of missing and
 * present ones make no syscall on domain paths with the shim, while the
 * kernel sees every one without it; present paths still open (one real
 * openat each). The answers themselves are compared with the kernel's by
 * the differential oracle (shim/tests/oracle.c: open*, access, faccessat,
 * euidaccess, eaccess, syscall(openat/faccessat/faccessat2/access)).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import { SHIM, buildShim } from './helpers';

let tmp: string;
let dom: string;
let blob: string;

// Python's import machinery and gcc's include search in miniature: probe for files that
// are mostly not there, then open the one that is.
const PROBE = `
import os, sys
d = sys.argv[1]
out = []
for i in range(20):
    for name in ('missing%d.py' % i, 'pkg/missing%d/__init__.py' % i, 'file.txt/x%d' % i):
        p = d + '/' + name
        try:
            os.close(os.open(p, os.O_RDONLY)); out.append('open')
        except OSError as e:
            out.append(e.strerror)
        out.append(os.access(p, os.F_OK))
out.append(os.access(d + '/pkg/__init__.py', os.F_OK))
with open(d + '/file.txt') as f: out.append(f.read().strip())
print(len(out), sorted(set(map(str, out))))
`;

function traced(preload: boolean): { stdout: string; calls: string[] } {
  const log = path.join(tmp, `strace-${preload}.txt`);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  if (preload) Object.assign(env, { LD_PRELOAD: SHIM, VRIFT_BLOB: blob });
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=open,openat,openat2,access,faccessat,faccessat2', '-o', log, 'python3', '-S', '-c', PROBE, dom], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`strace python3 failed: ${r.stderr}`);
  const calls = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(`"${dom}/`));
  return { stdout: r.stdout.trim(), calls };
}

beforeAll(async () => {
  buildShim();
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-probes-')));
  fs.chmodSync(tmp, 0o755);
  dom = path.join(tmp, 'dom');
  fs.mkdirSync(path.join(dom, 'pkg'), { recursive: true });
  fs.writeFileSync(path.join(dom, 'pkg', '__init__.py'), '');
  fs.writeFileSync(path.join(dom, 'file.txt'), 'content\n');
  blob = path.join(tmp, 'probes.blob');
  fs.writeFileSync(blob, encodeBlob(await scanHostTree(dom)), { mode: 0o644 });
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('missing-path open() and access(F_OK) probes make no syscall under the shim; the answers are the kernel\'s', () => {
  const without = traced(false);
  const withShim = traced(true);
  expect(withShim.stdout).toBe(without.stdout);
  expect(without.stdout).toBe("122 ['False', 'No such file or directory', 'Not a directory', 'True', 'content']");
  // Without the shim: 60 opens + 60 access probes + the present access + the real open.
  expect(without.calls.length).toBe(122);
  // With it: only the open of the present file reaches the kernel.
  expect(withShim.calls).toHaveLength(1);
  expect(withShim.calls[0]).toMatch(/openat\(AT_FDCWD, ".*\/file\.txt", O_RDONLY\|O_CLOEXEC\) = \d+/);
  console.log(`probes: ${without.calls.length} open/access syscalls on domain paths without the shim, ${withShim.calls.length} with it`);
});
