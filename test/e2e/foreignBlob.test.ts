/**
 * A blob copied from another image must not pass the root check
 * (docs/shim-safety.md section 6): two `vrift build` images of different
 * trees with the same SOURCE_DATE_EPOCH have /vrift with the same mtime
 * seconds; its nanoseconds are a digest of the tree each blob describes
 * (src/tree/blobEntries.ts treeBlobRows), so PSFS_H_CHECK_ROOT_MTIME
 * rejects image A's blob in a container of image B: every call passes
 * through. Real engine; the foreign blob is bind-mounted and named by
 * VRIFT_BLOB (root-owned, 0644: the shim's ownership rules accept it).
 *
 * Also: fstat of the root agrees with stat of the root on st_ino (the
 * root's nanoseconds left the dense tag numbering, psfs_tagged still
 * recognises them).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BASE_IMAGE, imageExists, requireEnvironment, vrift } from './helpers';

jest.setTimeout(600_000);

const TAG_A = `vrift-e2e/foreign-a:${process.pid}`;
const TAG_B = `vrift-e2e/foreign-b:${process.pid}`;
const EPOCH = '1700000000';

let work: string;

/** Probe printed by python3 in the container, '|'-separated: root mtime (s, ns), root st_ino via stat and fstat, lstat of a.py and b.py. */
const PROBE = String.raw`python3 -c "
import os
s = os.stat('/vrift')
fd = os.open('/vrift', os.O_RDONLY)
f = os.fstat(fd)
os.close(fd)
def st(p):
    try:
        return hex(os.lstat(p).st_ino)
    except OSError as e:
        return e.strerror
print(s.st_mtime_ns // 10**9, s.st_mtime_ns % 10**9, hex(s.st_ino), hex(f.st_ino), st('/vrift/t/a.py'), st('/vrift/t/b.py'), sep='|')
"`;

interface Probe { sec: string; nsec: string; rootIno: string; rootFstatIno: string; a: string; b: string }

function probe(tag: string, blob?: string): Probe {
  const args = blob ? ['-v', `${blob}:/tmp/foreign.blob:ro`, '-e', 'VRIFT_BLOB=/tmp/foreign.blob'] : [];
  const r = spawnSync('docker', ['run', '--rm', '--network', 'none', ...args, tag, 'bash', '-c', PROBE], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`docker run ${tag}: ${r.stderr}`);
  const [sec, nsec, rootIno, rootFstatIno, a, b] = r.stdout.trim().split('|');
  return { sec, nsec, rootIno, rootFstatIno, a, b };
}

beforeAll(() => {
  requireEnvironment();
  work = mkdtempSync(path.join(os.tmpdir(), 'vrift-foreign-'));
  chmodSync(work, 0o755);
  const env = { ...process.env, SOURCE_DATE_EPOCH: EPOCH };
  for (const [name, tag] of [['a', TAG_A], ['b', TAG_B]] as const) {
    const src = path.join(work, name);
    mkdirSync(src, { mode: 0o755 });
    chmodSync(src, 0o755);
    writeFileSync(path.join(src, `${name}.py`), `print("${name}")\n`);
    const r = vrift(['build', '--base', `docker-daemon:${BASE_IMAGE}`, '--add', `${src}:/vrift/t`, '--tag', tag, '--load', '--quiet', '--cache-dir', path.join(work, 'cache')], { env });
    if (r.status !== 0) throw new Error(`vrift build ${tag} failed: ${r.stderr}`);
    // The image's own blob, copied out (docker cp: no process of the image runs).
    const id = execFileSync('docker', ['create', tag, 'true'], { encoding: 'utf8' }).trim();
    try {
      execFileSync('docker', ['cp', `${id}:/usr/lib/vrift/psfs.blob`, path.join(work, `${name}.blob`)]);
    } finally {
      execFileSync('docker', ['rm', '-f', id], { stdio: 'ignore' });
    }
    chmodSync(path.join(work, `${name}.blob`), 0o644);
  }
});

afterAll(() => {
  for (const tag of [TAG_A, TAG_B]) if (imageExists(tag)) execFileSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
  if (work) rmSync(work, { recursive: true, force: true });
});

test('same SOURCE_DATE_EPOCH: the roots share their seconds, not their nanoseconds', () => {
  const a = probe(TAG_A);
  const b = probe(TAG_B);
  expect(a.sec).toBe(EPOCH);
  expect(b.sec).toBe(EPOCH);
  expect(a.nsec).not.toBe(b.nsec);
  // Above the dense tags (1 = the root's own number, 2 = /vrift/t, ...).
  expect(Number(a.nsec)).toBeGreaterThan(10);
  expect(Number(b.nsec)).toBeGreaterThan(10);
});

test('each image answers from its own blob, and fstat of the root agrees with stat (identity tag of the root)', () => {
  for (const [tag, own] of [[TAG_A, 'a'], [TAG_B, 'b']] as const) {
    const p = probe(tag);
    const mine = own === 'a' ? p.a : p.b;
    const theirs = own === 'a' ? p.b : p.a;
    expect(mine).toMatch(/^0x5652/); // synthetic st_ino: answered from the blob
    expect(theirs).toBe('No such file or directory');
    expect(p.rootIno).toMatch(/^0x5652/);
    expect(p.rootFstatIno).toBe(p.rootIno); // kernel answer for the root patched by psfs_tagged
    // The same blob named by VRIFT_BLOB is accepted too (the mount itself changes nothing).
    const named = probe(tag, path.join(work, `${own}.blob`));
    expect(named.rootIno).toBe(p.rootIno);
  }
});

test("image A's blob in a container of image B is rejected: every answer is the kernel's", () => {
  const kernel = spawnSync('docker', ['run', '--rm', '--network', 'none', '-e', 'LD_PRELOAD=', TAG_B, 'bash', '-c', PROBE], { encoding: 'utf8' });
  expect(kernel.status).toBe(0);
  const k = kernel.stdout.trim().split('|');
  const p = probe(TAG_B, path.join(work, 'a.blob'));
  // A accepted foreign blob would say /vrift/t/a.py exists (synthetic st_ino)
  // and /vrift/t/b.py does not; the kernel says the opposite.
  expect(p.a).toBe('No such file or directory');
  expect(p.b).not.toMatch(/^0x5652/);
  expect(p.b).toBe(k[5]);
  expect(p.rootIno).toBe(k[2]);
  expect(p.rootIno).not.toMatch(/^0x5652/);
  // And the other way round.
  const q = probe(TAG_A, path.join(work, 'b.blob'));
  expect(q.b).toBe('No such file or directory');
  expect(q.a).not.toMatch(/^0x5652/);
});
