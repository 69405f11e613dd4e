/**
 * The shim switches itself off where its blob no longer describes what a
 * path names (issue 4 item 6; docs/shim-safety.md section 6):
 *  - after a successful chroot() (libc's and syscall(SYS_chroot)), for the
 *    rest of the process;
 *  - at start, when a mount point lies on or below a domain root (read from
 *    /proc/self/mountstats, octal escapes such as \040 decoded).
 * A canary blob (a wrong st_size for one file) shows whether the shim
 * answers: 999999 from the blob, 10 from the kernel. The refusal (EROFS)
 * goes with it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import * as F from '../../src/blob/format';
import { SHIM, buildShim, entryOffset } from './helpers';

let tmp: string;
let dom: string;
let blob: string;
const mounted: string[] = [];

// Prints "<tag> <st_size of small> <result of creating a file>" at each step.
const PROBE = `
import os, sys, ctypes
d, how = sys.argv[1], sys.argv[2]
def probe(tag):
    try: size = os.stat(d + '/small').st_size
    except OSError as e: size = os.strerror(e.errno)
    try:
        os.close(os.open(d + '/new', os.O_WRONLY | os.O_CREAT, 0o644)); os.unlink(d + '/new'); w = 'ok'
    except OSError as e: w = os.strerror(e.errno)
    print(tag, size, w)
def chroot(p):
    if how == 'libc':
        os.chroot(p)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        nr = {'x86_64': 161, 'aarch64': 51}[os.uname().machine]
        if libc.syscall(ctypes.c_long(nr), p.encode()) != 0: raise OSError(ctypes.get_errno(), 'chroot')
probe('start')
if how != 'none':
    try: chroot('/nonexistent-vrift-dir')
    except OSError: pass
    probe('failed-chroot')
    chroot('/')
    probe('chroot')
`;

function probe(how: string): string[] {
  const r = spawnSync('python3', ['-c', PROBE, dom, how], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, LD_PRELOAD: SHIM, VRIFT_BLOB: blob },
  });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

function mount(args: string[], at: string): void {
  fs.mkdirSync(at, { recursive: true });
  execFileSync('mount', [...args, at]);
  mounted.push(at);
}
function umount(at: string): void {
  execFileSync('umount', [at]);
  mounted.splice(mounted.indexOf(at), 1);
}

beforeAll(async () => {
  buildShim();
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-chroot-')));
  fs.chmodSync(tmp, 0o755);
  dom = path.join(tmp, 'dom');
  fs.mkdirSync(path.join(dom, 'sub'), { recursive: true });
  fs.mkdirSync(path.join(dom, 'sp ace'));
  fs.mkdirSync(path.join(tmp, 'dom-other')); // shares the root's prefix, not below it
  fs.writeFileSync(path.join(dom, 'small'), 'x'.repeat(10));
  const tree = await scanHostTree(dom);
  const b = encodeBlob(tree);
  b.writeBigUInt64LE(999_999n, entryOffset(b, Buffer.from(path.join(dom, 'small'))) + F.ENTRY.size);
  blob = path.join(tmp, 'canary.blob');
  fs.writeFileSync(blob, b, { mode: 0o644 });
});

afterAll(() => {
  for (const m of mounted.reverse()) spawnSync('umount', [m]);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('chroot', () => {
  test.each(['libc', 'syscall'])('%s chroot: a failed one changes nothing; after a successful one every call passes through', (how) => {
    expect(probe(how)).toEqual(['start 999999 Read-only file system', 'failed-chroot 999999 Read-only file system', 'chroot 10 ok']);
  });
});

describe('mounts on or below a domain root reject the blob at start', () => {
  test('control: no mount, the canary is answered', () => {
    expect(probe('none')).toEqual(['start 999999 Read-only file system']);
  });
  test('a tmpfs on a directory below the root', () => {
    mount(['-t', 'tmpfs', 'none'], path.join(dom, 'sub'));
    try {
      expect(probe('none')).toEqual(['start 10 ok']);
    } finally {
      umount(path.join(dom, 'sub'));
    }
    expect(probe('none')).toEqual(['start 999999 Read-only file system']);
  });
  test('a mount point with a space (\\040 in /proc/self/mountstats)', () => {
    const at = path.join(dom, 'sp ace');
    mount(['-t', 'tmpfs', 'none'], at);
    try {
      expect(fs.readFileSync('/proc/self/mountstats', 'utf8')).toContain(at.replace(' ', '\\040'));
      expect(probe('none')).toEqual(['start 10 ok']);
    } finally {
      umount(at);
    }
  });
  test('a bind mount on the root itself', () => {
    mount(['--bind', dom], dom);
    try {
      expect(probe('none')).toEqual(['start 10 ok']);
    } finally {
      umount(dom);
    }
  });
  test('a mount next to the root with the same name prefix does not count', () => {
    mount(['-t', 'tmpfs', 'none'], path.join(tmp, 'dom-other'));
    try {
      expect(probe('none')).toEqual(['start 999999 Read-only file system']);
    } finally {
      umount(path.join(tmp, 'dom-other'));
    }
  });
});
