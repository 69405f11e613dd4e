/**
 * Differential oracle test of libvrift.so on the host (issue 2, issue 7 item 4).
 *
 * A temp host tree is scanned into a PSFS blob; shim/build/oracle calls every
 * exported stat entry point (by symbol, incl. the __xstat ABI and
 * syscall(SYS_statx/SYS_newfstatat/SYS_stat)) for every path in the tree and
 * for >= 200 adversarial spellings, once plainly (the kernel is the oracle)
 * and once under LD_PRELOAD. Outputs must be identical, except for the
 * statx fields the shim documents as not provided (helpers.normalizeLine).
 *
 * That the shim really answered (rather than passing everything through) is
 * proven by shimAnswers.test.ts (strace) and by the canary cases below.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import * as F from '../../src/blob/format';
import {
  adversarial,
  blobFor,
  buildShim,
  countCalls,
  diffOutputs,
  entryOffset,
  fixHeaderCrc,
  makeHostTree,
  oracleInput,
  runOracle,
  writeBlob,
  type HostFixture,
} from './helpers';

let fx: HostFixture;
let paths: (Buffer | null)[];
let input: Buffer;
let kernel: string[];

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
/** An EACCES from a lookup (search permission), not from an access(R_OK/X_OK) check of the file itself. */
const lookupEacces = (l: string): boolean => l.includes('err=EACCES') && !/^\S*:(R_OK|X_OK|R_OK\|X_OK) /.test(l);
beforeAll(async () => {
  buildShim();
  fx = await makeHostTree();
  paths = [...fx.paths, ...adversarial(fx)];
  input = oracleInput(paths);
  kernel = runOracle(input);
});

afterAll(() => {
  if (fx) {
    fs.chmodSync(`${fx.tmp}/dom/locked`, 0o755);
    fs.rmSync(fx.tmp, { recursive: true, force: true });
  }
});

test('the fixture covers every kind of path and >= 200 adversarial spellings', () => {
  expect(fx.paths.length).toBeGreaterThan(80);
  expect(paths.length - fx.paths.length).toBeGreaterThanOrEqual(200);
  const lines = kernel.filter((l) => l.length > 0);
  // The kernel answers include hits, ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, EFAULT.
  for (const e of ['err=ENOENT', 'err=ENOTDIR', 'err=ELOOP', 'err=ENAMETOOLONG', 'err=EFAULT', 'mode=04']) {
    expect(lines.some((l) => l.includes(e))).toBe(true);
  }
});

test('host blob: every entry point, every field and errno equal the kernel (except documented statx fields)', () => {
  const blob = writeBlob(fx, 'host.blob', blobFor(fx));
  const shim = runOracle(input, blob);
  const d = diffOutputs(paths, kernel, shim, false);
  expect(d).toEqual([]);
  console.log(`differential: ${paths.length} paths (${fx.paths.length} in tree), ${countCalls(kernel)} calls compared`);
});

test('as an unprivileged user (uid 65534): EACCES cases pass through, every answer equals the kernel', () => {
  const blob = writeBlob(fx, 'host-nobody.blob', blobFor(fx));
  const k = runOracle(input, undefined, 65534);
  // The permission-dependent answers are really exercised: root sees none.
  expect(k.some(lookupEacces)).toBe(true);
  expect(kernel.some(lookupEacces)).toBe(false);
  expect(diffOutputs(paths, k, runOracle(input, blob, 65534), false)).toEqual([]);
});

test("a root whose ancestor others cannot search: the blob is rejected, EACCES stays the kernel's", async () => {
  // Own tree (not fx): chmod would change the ctime the other tests compare.
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-shim-anc-')));
  try {
    fs.mkdirSync(path.join(tmp, 'dom'));
    fs.writeFileSync(path.join(tmp, 'dom', 'small'), 'x');
    const tree = await scanHostTree(path.join(tmp, 'dom'));
    const blob = path.join(fx.tmp, 'blobs', 'ancestor.blob');
    fs.writeFileSync(blob, encodeBlob(tree), { mode: 0o644 });
    fs.chmodSync(tmp, 0o700); // mkdtemp's mode: others cannot search it
    const probe = oracleInput([B(`${tmp}/dom/small`), B(`${tmp}/dom/missing`), B(`${tmp}/dom`)]);
    const k = runOracle(probe, undefined, 65534);
    expect(k.filter(lookupEacces).length).toBeGreaterThan(30);
    expect(runOracle(probe, blob, 65534)).toEqual(k);
    // Control: with the ancestor searchable, the EACCES answers are gone.
    fs.chmodSync(tmp, 0o755);
    const k2 = runOracle(probe, undefined, 65534);
    expect(k2.some(lookupEacces)).toBe(false);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('PSFS_H_DEV_RUNTIME blob (entry st_dev zeroed): st_dev, stx_dev_*, stx_mnt_id from roots[0] at init', () => {
  const blob = writeBlob(fx, 'devrt.blob', blobFor(fx, { flags: F.H_DEV_RUNTIME, devZero: true }));
  const shim = runOracle(input, blob);
  expect(diffOutputs(paths, kernel, shim, true)).toEqual([]);
});

describe('canary: a blob answer is visible, a rejected blob is not', () => {
  // The canary is a wrong st_size on one file entry. When the shim uses the
  // blob, the oracle sees it; when the blob is rejected, the kernel's value.
  const canaryInput = (): { input: Buffer; paths: Buffer[] } => {
    const p = [Buffer.concat([fx.root, B('/small')]), Buffer.concat([fx.root, B('/missing')]), Buffer.concat([fx.root, B('/d/f')])];
    return { input: oracleInput(p), paths: p };
  };
  const canary = (flags = 0): Buffer => {
    const blob = blobFor(fx, { flags });
    blob.writeBigUInt64LE(999_999n, entryOffset(blob, Buffer.concat([fx.root, B('/small')])) + F.ENTRY.size);
    return blob;
  };

  test('control: the valid canary blob is used (the differential test can fail)', () => {
    const { input: inp, paths: p } = canaryInput();
    const k = runOracle(inp);
    const s = runOracle(inp, writeBlob(fx, 'canary.blob', canary()));
    const d = diffOutputs(p, k, s, false, 1000);
    expect(d.length).toBeGreaterThan(10);
    expect(d.every((l) => l.includes('/small') && l.includes('size=999999'))).toBe(true);
  });

  const faults: [string, (b: Buffer) => Buffer][] = [
    ['bad magic', (b) => (b[0] ^= 1, b)],
    ['version 1 (FNV-1a hash, retired)', (b) => fixHeaderCrc((b.writeUInt32LE(1, F.HEADER.version), b))],
    ['future version', (b) => fixHeaderCrc((b.writeUInt32LE(F.VERSION + 1, F.HEADER.version), b))],
    ['header crc flipped', (b) => (b[F.HEADER.headerCrc32] ^= 0x40, b)],
    ['unknown header flag', (b) => fixHeaderCrc((b.writeUInt32LE(1 << 7, F.HEADER.flags), b))],
    ['content version 99', (b) => fixHeaderCrc((b.writeUInt32LE(99, F.HEADER.contentVersion), b))],
    ['file_size + 8', (b) => fixHeaderCrc((b.writeBigUInt64LE(BigInt(b.length + 8), F.HEADER.fileSize), b))],
    ['truncated file', (b) => b.subarray(0, b.length - 8)],
    ['bucket_count not a power of two', (b) => fixHeaderCrc((b.writeUInt32LE(b.readUInt32LE(F.HEADER.bucketCount) - 1, F.HEADER.bucketCount), b))],
    ['max_probe 0', (b) => fixHeaderCrc((b.writeUInt32LE(0, F.HEADER.maxProbe), b))],
    ['entries_off misaligned', (b) => fixHeaderCrc((b.writeBigUInt64LE(b.readBigUInt64LE(F.HEADER.entriesOff) + 4n, F.HEADER.entriesOff), b))],
    ['sections overlap', (b) => fixHeaderCrc((b.writeBigUInt64LE(b.readBigUInt64LE(F.HEADER.bucketsOff), F.HEADER.entriesOff), b))],
    ['root_count 0', (b) => fixHeaderCrc((b.writeUInt32LE(0, F.HEADER.rootCount), b))],
    ['root path with trailing slash', (b) => {
      const ro = Number(b.readBigUInt64LE(F.HEADER.rootsOff));
      b.writeUInt32LE(b.readUInt32LE(ro + F.ROOT.pathLen) + 1, ro + F.ROOT.pathLen); // next string byte is "/"
      return b;
    }],
    ['entry_count * 128 past the end', (b) => fixHeaderCrc((b.writeUInt32LE(0x7fffffff, F.HEADER.entryCount), b))],
  ];
  test.each(faults)('header fault "%s" -> silent passthrough', (_name, fault) => {
    const { input: inp, paths: p } = canaryInput();
    const k = runOracle(inp);
    const s = runOracle(inp, writeBlob(fx, 'fault.blob', fault(canary())));
    expect(diffOutputs(p, k, s, false)).toEqual([]);
  });

  test('symlink chains: 39 hops are answered from the blob, 40 (Linux MAXSYMLINKS, where the kernel\'s own answer varies) are the kernel\'s', () => {
    const p = [Buffer.concat([fx.root, B('/hop2')]), Buffer.concat([fx.root, B('/hop1')])];
    const out = runOracle(oracleInput(p), writeBlob(fx, 'hops.blob', canary()));
    const sections: string[][] = [];
    for (const l of out) {
      if (l.startsWith('## ')) sections.push([]);
      else if (l.length > 0) sections[sections.length - 1].push(l);
    }
    expect(sections).toHaveLength(2);
    const real = fx.entries.find((e) => e.path.equals(Buffer.concat([fx.root, B('/small')])))!.size;
    const stat = (s: string[]): string => s.find((l) => l.startsWith('stat '))!;
    // hop2 -> hop3 ... hop40 -> small: the following calls get the canary.
    expect(stat(sections[0])).toContain('size=999999 ');
    expect(sections[0].filter((l) => l.includes('size=999999')).length).toBeGreaterThan(5);
    // hop1: one hop more; the kernel answers (small's real size), never the blob.
    expect(stat(sections[1])).toMatch(new RegExp(`size=${real} |err=ELOOP`));
    expect(sections[1].some((l) => l.includes('size=999999'))).toBe(false);
    expect(sections[1].filter((l) => l.includes(`size=${real} `)).length).toBeGreaterThan(5);
  });

  test('PSFS_H_CHECK_ROOT_MTIME: matching root mtime -> used; different -> rejected', () => {
    const { input: inp, paths: p } = canaryInput();
    const k = runOracle(inp);
    const good = canary(F.H_CHECK_ROOT_MTIME);
    expect(diffOutputs(p, k, runOracle(inp, writeBlob(fx, 'mt1.blob', good)), false).length).toBeGreaterThan(0);
    const bad = canary(F.H_CHECK_ROOT_MTIME);
    const ro = entryOffset(bad, fx.root);
    bad.writeUInt32LE((bad.readUInt32LE(ro + F.ENTRY.mtimeNsec) + 1) % 1_000_000_000, ro + F.ENTRY.mtimeNsec);
    expect(diffOutputs(p, k, runOracle(inp, writeBlob(fx, 'mt2.blob', bad)), false)).toEqual([]);
  });

  test('blob writable by group/other, or owned by another user -> rejected', () => {
    const { input: inp, paths: p } = canaryInput();
    const k = runOracle(inp);
    expect(diffOutputs(p, k, runOracle(inp, writeBlob(fx, 'w.blob', canary(), 0o664)), false)).toEqual([]);
    const f = writeBlob(fx, 'o.blob', canary());
    fs.chownSync(f, 4321, 4321);
    expect(diffOutputs(p, k, runOracle(inp, f), false)).toEqual([]);
    expect(diffOutputs(p, k, runOracle(inp, `${fx.tmp}/blobs/no-such.blob`), false)).toEqual([]);
  });

  test('random body corruption never crashes and never changes an answer outside the domain', () => {
    const outsidePaths = [Buffer.concat([fx.outside, B('/file')]), B('/etc/hostname'), B('/'), Buffer.concat([fx.root, B('/../outside/file')])];
    const inp = oracleInput(outsidePaths);
    const k = runOracle(inp);
    const clean = blobFor(fx);
    const bodyStart = F.HEADER_SIZE;
    let seed = 12345;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    for (let round = 0; round < 40; round++) {
      const blob = Buffer.from(clean);
      for (let i = 0; i < 1 + rnd(50); i++) blob[bodyStart + rnd(blob.length - bodyStart)] = rnd(256);
      const f = writeBlob(fx, 'fuzz.blob', blob);
      expect(diffOutputs(outsidePaths, k, runOracle(inp, f), false)).toEqual([]);
      // In-domain paths under a corrupt body: any answer, but no crash.
      runOracle(input, f); // throws on a crash (non-zero exit or signal)
    }
  });
});
