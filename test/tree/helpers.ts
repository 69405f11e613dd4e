import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as F from '../../src/blob/format';

/** One decoded blob entry (the fields the tests compare). */
export interface Decoded {
  path: Buffer;
  target?: Buffer;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: bigint;
  blocks: bigint;
  ino: bigint;
  dev: bigint;
  blksize: number;
  atime: [bigint, number];
  mtime: [bigint, number];
  ctime: [bigint, number];
}

/** Decode a PSFS blob's header flags, roots and entries (layout: shim/psfs_format.h, mirrored in src/blob/format.ts). */
export function decodeBlob(b: Buffer): { flags: number; roots: Buffer[]; entries: Decoded[] } {
  expect(b.subarray(0, 8).equals(F.MAGIC)).toBe(true);
  const H = F.HEADER;
  const n = b.readUInt32LE(H.entryCount);
  const eo = Number(b.readBigUInt64LE(H.entriesOff));
  const so = Number(b.readBigUInt64LE(H.stringsOff));
  const ro = Number(b.readBigUInt64LE(H.rootsOff));
  const str = (off: number, len: number) => Buffer.from(b.subarray(so + off, so + off + len));
  const roots = Array.from({ length: b.readUInt32LE(H.rootCount) }, (_, i) =>
    str(b.readUInt32LE(ro + i * F.ROOT_SIZE + F.ROOT.pathOff), b.readUInt32LE(ro + i * F.ROOT_SIZE + F.ROOT.pathLen)));
  const entries: Decoded[] = [];
  for (let i = 0; i < n; i++) {
    const o = eo + i * F.ENTRY_SIZE;
    const E = F.ENTRY;
    const tl = b.readUInt32LE(o + E.targetLen);
    const mode = b.readUInt32LE(o + E.mode);
    entries.push({
      path: str(b.readUInt32LE(o + E.pathOff), b.readUInt32LE(o + E.pathLen)),
      ...((mode & 0o170000) === 0o120000 ? { target: str(b.readUInt32LE(o + E.targetOff), tl) } : {}),
      mode,
      uid: b.readUInt32LE(o + E.uid),
      gid: b.readUInt32LE(o + E.gid),
      nlink: b.readUInt32LE(o + E.nlink),
      size: b.readBigUInt64LE(o + E.size),
      blocks: b.readBigUInt64LE(o + E.blocks),
      ino: b.readBigUInt64LE(o + E.ino),
      dev: b.readBigUInt64LE(o + E.dev),
      blksize: b.readUInt32LE(o + E.blksize),
      atime: [b.readBigInt64LE(o + E.atimeSec), b.readUInt32LE(o + E.atimeNsec)],
      mtime: [b.readBigInt64LE(o + E.mtimeSec), b.readUInt32LE(o + E.mtimeNsec)],
      ctime: [b.readBigInt64LE(o + E.ctimeSec), b.readUInt32LE(o + E.ctimeNsec)],
    });
  }
  return { flags: b.readUInt32LE(H.flags), roots, entries };
}

/**
 * A source tree exercising the interesting cases: duplicate contents in
 * several directories, an executable copy, sizes across block boundaries, an
 * empty file and directory, fast (<60 bytes) and slow symlinks, a path over
 * 255 bytes, a non-UTF-8 name, a 0700 directory, and a directory too large
 * for one ext4 block (just over: middir; well over: bigdir).
 */
export async function makeFixture(root: string): Promise<void> {
  const w = async (rel: string | Buffer, data: string | Buffer, mode = 0o644) => {
    const p = Buffer.isBuffer(rel) ? Buffer.concat([Buffer.from(root + '/'), rel]) : path.join(root, rel);
    await fsp.mkdir(path.dirname(p.toString()), { recursive: true });
    await fsp.writeFile(p, data, { mode });
    await fsp.chmod(p, mode);
  };
  await w('pkg/__init__.py', 'from .core import *\n');
  await w('pkg/core.py', 'def f():\n    return 42\n');
  await w('pkg/sub/__init__.py', 'from .core import *\n'); // duplicate content
  await w('pkg2/__init__.py', 'from .core import *\n'); // duplicate content
  await w('bin/tool', '#!/bin/sh\necho tool\n', 0o755);
  await w('bin/tool-copy', '#!/bin/sh\necho tool\n', 0o755);
  await w('bin/tool-noexec', '#!/bin/sh\necho tool\n', 0o644); // same content, other mode
  await w('data/empty', '');
  await w('data/one', 'x');
  await w('data/b4097', Buffer.alloc(4097, 1));
  await w('data/b100000', Buffer.alloc(100000, 2));
  await fsp.mkdir(path.join(root, 'emptydir'));
  await fsp.symlink('../pkg/core.py', path.join(root, 'data/fast-link'));
  await fsp.symlink(`../pkg/${'x'.repeat(70)}/../core.py`, path.join(root, 'data/slow-link')); // 86 bytes, dangling via a missing dir is fine
  const long = `long/${'l'.repeat(120)}/${'m'.repeat(140)}`;
  await w(`${long}/file-with-a-long-path.txt`, 'long\n');
  await w(Buffer.from([0x6e, 0x6f, 0x6e, 0x75, 0x74, 0x66, 0x38, 0x2f, 0xe9, 0x74, 0xe9]), 'latin1 name\n'); // "nonutf8/\xe9t\xe9"
  await fsp.mkdir(path.join(root, 'private'), { mode: 0o700 });
  await w('private/secret', 's');
  await fsp.chmod(path.join(root, 'private'), 0o700);
  // 24 + 140 * 32 = 4504 bytes of entries: one htree split, 12288 bytes whatever the hash seed.
  for (let i = 0; i < 140; i++) await w(`middir/module_number_${String(i).padStart(4, '0')}.py`, `v = ${i % 7}\n`);
  for (let i = 0; i < 200; i++) await w(`bigdir/module_number_${String(i).padStart(4, '0')}.py`, `v = ${i % 7}\n`);
  // Distinct past mtimes (children before parents, so directory times stick): not
  // "racy" for the digest cache, and different per path so mixing them up shows.
  const all = await walk(root, root);
  let t = 1_600_000_000;
  for (const rel of all.reverse()) {
    const p = Buffer.concat([Buffer.from(root), rel]);
    t += 7;
    await fsp.lutimes(p, t, t);
  }
  // Files that are to share a CAS object share their mtime too (hardlinks share
  // one st_mtime: equal contents with other mtimes get their own objects).
  const same = async (rels: string[], s: number) => { for (const rel of rels) await fsp.utimes(path.join(root, rel), s, s); };
  await same(['pkg/__init__.py', 'pkg/sub/__init__.py', 'pkg2/__init__.py'], 1_500_000_000);
  await same(['bin/tool', 'bin/tool-copy'], 1_500_000_100);
  for (let i = 0; i < 200; i++) {
    const rels = [`bigdir/module_number_${String(i).padStart(4, '0')}.py`, ...(i < 140 ? [`middir/module_number_${String(i).padStart(4, '0')}.py`] : [])];
    await same(rels, 1_500_000_200 + (i % 7)); // the same 7 contents, one mtime each
  }
}

/** Run GNU tar; returns stdout. */
export function tar(args: string[]): string {
  return execFileSync('tar', args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 }).toString();
}

/** Every path under `dir` (dir included), as raw bytes relative to `base` with a leading "/". */
export async function walk(base: string, dir: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  const stack = [Buffer.from(dir)];
  while (stack.length) {
    const d = stack.pop()!;
    out.push(d.subarray(base.length));
    for (const n of await fsp.readdir(d, { encoding: 'buffer' })) {
      const p = Buffer.concat([d, Buffer.from('/'), n]);
      if ((await fsp.lstat(p)).isDirectory()) stack.push(p);
      else out.push(p.subarray(base.length));
    }
  }
  return out.sort(Buffer.compare);
}
