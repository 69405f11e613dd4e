/**
 * Drift test: src/blob/format.ts (and reader.ts's error codes) against what a
 * C compiler sees in shim/psfs_format.h and shim/psfs_core.h.
 *
 * The headers are compiled to wasm32 with test/wasm/glue.c (npm run build:wasm);
 * glue exports offsetof/sizeof of every struct field and the value of every
 * constant. The list of names to check is parsed from the header text itself,
 * so a field or constant added to the C header without a TS mirror (or a glue
 * export) fails here too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import * as F from '../../src/blob/format';
import { PSFS_EINVAL, PSFS_ENOTSUP } from '../../src/blob/reader';
import { encodeBlob, type BlobEntry } from '../../src/blob/writer';
import { OUTCOME, PsfsWasm } from '../wasm/psfsWasm';
import { prngUnit } from '../prng';

const SHIM = path.join(__dirname, '..', '..', 'shim');
const formatH = fs.readFileSync(path.join(SHIM, 'psfs_format.h'), 'utf8');
const coreH = fs.readFileSync(path.join(SHIM, 'psfs_core.h'), 'utf8');

const stripComments = (s: string): string => s.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

/** struct psfs_<name> { <type> <field>[N]; ... } parsed from header text. */
function parseStructs(src: string): Map<string, { field: string; type: string; count: number }[]> {
  const out = new Map<string, { field: string; type: string; count: number }[]>();
  for (const m of stripComments(src).matchAll(/struct\s+psfs_(\w+)\s*\{([^}]*)\}\s*;/g)) {
    const fields = [];
    for (const f of m[2].matchAll(/(u?int\d+_t)\s+(\w+)\s*(?:\[(\d+)\])?\s*;/g)) {
      fields.push({ type: f[1], field: f[2], count: f[3] ? Number(f[3]) : 1 });
    }
    out.set(m[1], fields);
  }
  return out;
}

/** Names of every #define PSFS_* with a value and every PSFS_* enum member. */
function parseConstants(src: string): string[] {
  const s = stripComments(src);
  const names = new Set<string>();
  for (const m of s.matchAll(/^#define[ \t]+(PSFS_\w+)[ \t]+\S/gm)) names.add(m[1]);
  for (const e of s.matchAll(/enum\s*\w*\s*\{([^}]*)\}/g)) for (const m of e[1].matchAll(/(PSFS_\w+)\s*=/g)) names.add(m[1]);
  return [...names];
}

const camel = (s: string): string => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

const TS_LAYOUT: Record<string, Record<string, number>> = { header: F.HEADER, root: F.ROOT, bucket: F.BUCKET, entry: F.ENTRY };
const TS_SIZE: Record<string, number> = { header: F.HEADER_SIZE, root: F.ROOT_SIZE, bucket: F.BUCKET_SIZE, entry: F.ENTRY_SIZE };
const C_SIZE: Record<string, number> = { uint8_t: 1, uint32_t: 4, int32_t: 4, uint64_t: 8, int64_t: 8 };

let w: PsfsWasm;
beforeAll(() => {
  w = new PsfsWasm();
});

describe('psfs_format.h structs vs src/blob/format.ts', () => {
  const structs = parseStructs(formatH);

  test('the header defines exactly the four on-disk structs format.ts mirrors', () => {
    expect([...structs.keys()].sort()).toEqual(Object.keys(TS_LAYOUT).sort());
  });

  for (const [name, fields] of structs) {
    test(`struct psfs_${name}: sizeof, every field offset and width`, () => {
      expect(fields.length).toBeGreaterThan(0);
      expect(w.u32(`sizeof_${name}`)).toBe(TS_SIZE[name]);
      const ts = TS_LAYOUT[name];
      // No TS field the C struct lacks, none missing.
      expect(Object.keys(ts).sort()).toEqual(fields.map((f) => camel(f.field)).sort());
      for (const f of fields) {
        const off = w.u32(`off_${name}_${f.field}`);
        const size = w.u32(`size_${name}_${f.field}`);
        expect({ field: f.field, off }).toEqual({ field: f.field, off: ts[camel(f.field)] });
        // The text parse agrees with the compiler about the width.
        expect({ field: f.field, size }).toEqual({ field: f.field, size: C_SIZE[f.type] * f.count });
      }
      // Fields tile the struct: each ends where the next (by TS offset) starts.
      const sorted = fields.map((f) => ({ off: ts[camel(f.field)], size: w.u32(`size_${name}_${f.field}`) })).sort((a, b) => a.off - b.off);
      sorted.forEach((f, i) => expect(f.off + f.size).toBe(i + 1 < sorted.length ? sorted[i + 1].off : TS_SIZE[name]));
    });
  }
});

describe('constants', () => {
  const formatConsts = parseConstants(formatH);

  test('the header parse found the constants', () => {
    expect(formatConsts).toEqual(expect.arrayContaining(['PSFS_MAGIC', 'PSFS_VERSION', 'PSFS_H_DEV_RUNTIME', 'PSFS_E_REACHABLE']));
  });

  for (const name of formatConsts) {
    test(`${name} (psfs_format.h) equals format.ts`, () => {
      const tsName = name.replace(/^PSFS_/, '');
      const tsValue = (F as unknown as Record<string, unknown>)[tsName];
      expect(tsValue).toBeDefined();
      if (name === 'PSFS_MAGIC') {
        const len = w.u32('c_PSFS_MAGIC_sizeof');
        expect(w.read(w.u32('c_PSFS_MAGIC'), len)).toEqual(F.MAGIC);
        expect(len).toBe(F.MAGIC_LEN);
      } else {
        expect(w.u32(`c_${name}`)).toBe(tsValue);
      }
    });
  }

  test('psfs_core.h constants equal the TS mirrors (reader.ts codes, psfsWasm outcomes)', () => {
    const coreConsts = parseConstants(coreH);
    expect(coreConsts.sort()).toEqual(['PSFS_EINVAL', 'PSFS_ENOENT', 'PSFS_ENOTDIR', 'PSFS_ENOTSUP', 'PSFS_FOLLOW', 'PSFS_HIT', 'PSFS_PASS'].sort());
    expect(w.u32('c_PSFS_EINVAL')).toBe(PSFS_EINVAL);
    expect(w.u32('c_PSFS_ENOTSUP')).toBe(PSFS_ENOTSUP);
    OUTCOME.forEach((o, i) => expect(w.u32(`c_PSFS_${o}`)).toBe(i));
    expect(w.u32('c_PSFS_FOLLOW')).toBe(1);
  });
});


describe('hash and crc32', () => {
  test('hash() equals C psfs_hash on 5000 random keys and seeds (lengths 0..300, all byte values)', () => {
    const r = prngUnit(0x5eed);
    let mismatches = 0;
    for (let i = 0; i < 5000; i++) {
      const key = Buffer.alloc(Math.floor(r() * 301));
      for (let j = 0; j < key.length; j++) key[j] = Math.floor(r() * 256);
      const seed = i < 8 ? i : Math.floor(r() * 4294967296);
      if (F.hash(seed, key) !== w.hash(seed, key)) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  test('hash() equals psfs_hash on edge seeds and path-like keys', () => {
    for (const seed of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) {
      for (const k of ['', '/', '/vrift', '/vrift/node_modules/.bin/x', '\xff\xfe/\x00']) {
        const key = Buffer.from(k, 'latin1');
        expect(F.hash(seed, key)).toBe(w.hash(seed, key));
      }
    }
  });

  test('psfs_crc32 equals zlib crc32 (what the writer uses for header_crc32 / body_crc32)', () => {
    const r = prngUnit(7);
    for (let i = 0; i < 200; i++) {
      const b = Buffer.alloc(Math.floor(r() * 2000));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(r() * 256);
      expect(w.crc32(b)).toBe(crc32(b));
    }
    expect(w.crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });
});

describe('the writer puts every entry field at the C offset with the C width', () => {
  test('distinct sentinel values read back through C offsetof/sizeof', () => {
    const dir = (p: string, ino: bigint): BlobEntry => ({
      path: Buffer.from(p),
      mode: 0o40755,
      uid: 0,
      gid: 0,
      nlink: 2,
      size: 4096n,
      blocks: 8n,
      blksize: 4096,
      ino,
      dev: 1n,
      rdev: 0n,
      atime: { sec: 0n, nsec: 0 },
      mtime: { sec: 0n, nsec: 0 },
      ctime: { sec: 0n, nsec: 0 },
    });
    const link: BlobEntry = {
      path: Buffer.from('/r/l'),
      mode: 0o120777,
      uid: 0x11223344,
      gid: 0x55667788,
      nlink: 0x0a0b0c0d,
      size: 0x0102030405060708n,
      blocks: 0x1112131415161718n,
      blksize: 0x21222324,
      ino: 0x3132333435363738n,
      dev: 0x4142434445464748n,
      rdev: 0x5152535455565758n,
      atime: { sec: -0x6162636465666768n, nsec: 999_999_999 },
      mtime: { sec: 0x7172737475767778n, nsec: 123_456_789 },
      ctime: { sec: 0x0102030405060709n, nsec: 1 },
      target: Buffer.from('target-bytes'),
    };
    const blob = encodeBlob({ roots: [Buffer.from('/r')], entries: [dir('/r', 1n), link] });
    expect(w.loadBlob(blob)).toBe(0);
    const i = w.lookup(link.path);
    expect(i).toBeGreaterThanOrEqual(0);
    const base = w.u32('w_entry_addr', i);
    const get = (f: string): bigint => {
      const off = w.u32(`off_entry_${f}`);
      const size = w.u32(`size_entry_${f}`);
      const b = w.read(base + off, size);
      return size === 8 ? (f.endsWith('_sec') ? b.readBigInt64LE() : b.readBigUInt64LE()) : BigInt(b.readUInt32LE());
    };
    expect(get('mode')).toBe(BigInt(link.mode));
    expect(get('uid')).toBe(BigInt(link.uid));
    expect(get('gid')).toBe(BigInt(link.gid));
    expect(get('nlink')).toBe(BigInt(link.nlink));
    expect(get('size')).toBe(link.size);
    expect(get('blocks')).toBe(link.blocks);
    expect(get('blksize')).toBe(BigInt(link.blksize));
    expect(get('ino')).toBe(link.ino);
    expect(get('dev')).toBe(link.dev);
    expect(get('rdev')).toBe(link.rdev);
    expect(get('atime_sec')).toBe(link.atime.sec);
    expect(get('mtime_sec')).toBe(link.mtime.sec);
    expect(get('ctime_sec')).toBe(link.ctime.sec);
    expect(get('atime_nsec')).toBe(BigInt(link.atime.nsec));
    expect(get('mtime_nsec')).toBe(BigInt(link.mtime.nsec));
    expect(get('ctime_nsec')).toBe(BigInt(link.ctime.nsec));
    expect(get('flags')).toBe(BigInt(F.E_REACHABLE));
    expect(get('target_len')).toBe(BigInt(link.target!.length));
    expect(get('path_len')).toBe(BigInt(link.path.length));
    // Key and target bytes through the C offsets and the header's strings_off.
    const stringsOff = Number(blob.readBigUInt64LE(w.u32('off_header_strings_off')));
    const str = (offField: string, len: number): Buffer => w.read(w.blobBase + stringsOff + Number(get(offField)), len);
    expect(str('path_off', link.path.length)).toEqual(link.path);
    expect(str('target_off', link.target!.length)).toEqual(link.target);
  });
});
