/**
 * readVriftBase's check that a base's /vrift, as its layers' tar headers
 * show it, is exactly its blob's keys. The check streams the layers again
 * and looks each member up in the blob (no path held), and falls back to
 * the exact set of paths (mergedVriftPaths) when a layer hides something
 * (whiteouts, opaque directories, a directory replaced by a non-directory).
 * Oracle: mergedVriftPaths over the same layers, on random layer stacks,
 * with blobs that match, lack a path, or have one too many. And a blob
 * member too large to be one is refused at its header, a blob whose lookup
 * structures are corrupt is refused, and mergedVriftPaths' whiteouts in one
 * pass equal one pass each.
 */
import { Readable } from 'node:stream';
import * as F from '../../src/blob/format';
import { crc32 } from '../../src/blob/crc32';
import { checkBlob, headerCrc32, readHeader } from '../../src/blob/reader';
import { encodeBlob, type BlobEntry } from '../../src/blob/writer';
import type { Image, Layer } from '../../src/image/types';
import { SYNTHETIC_INO_BASE } from '../../src/tree';
import { mergedVriftPaths, readVriftBase, scanImage, type PathKind } from '../../src/verify/imageScan';
import { makeTar, sha } from '../image/helpers';
import { prngU32 } from '../prng';

type Member = Parameters<typeof makeTar>[0][number];

/** A layer of `tar`; `opened` counts reads of its tar. */
function layerOf(tar: Buffer, opened: () => void): Layer {
  return {
    digest: async () => sha(tar), diffID: async () => sha(tar), size: async () => tar.length,
    mediaType: async () => 'application/vnd.oci.image.layer.v1.tar',
    open: async () => Readable.from([tar]),
    openUncompressed: async () => {
      opened();
      return Readable.from([tar]);
    },
  };
}

/** An image of layers `tars` labelled with `blobDigest`; opens[i] counts reads of layer i. */
function imageOf(tars: Buffer[], blobDigest: string, opens: number[] = []): Image {
  const config = { architecture: 'amd64', os: 'linux', config: { Labels: { 'dev.vrift.blob.digest': blobDigest } }, rootfs: { type: 'layers', diff_ids: tars.map((t) => sha(t)) }, history: [] };
  return {
    manifest: async () => { throw new Error('not used'); }, rawManifest: async () => { throw new Error('not used'); },
    config: async () => config as never, rawConfig: async () => Buffer.from(JSON.stringify(config)),
    layers: async () => tars.map((t, i) => layerOf(t, () => (opens[i] = (opens[i] ?? 0) + 1))),
  };
}

/** Paths of a small tree whose names sort around "/" ("a.b" < "a/..." in bytes, "a" < "a.b"). */
const NAMES = ['a', 'a.b', 'b', 'c'];
function randomPath(next: () => number): string {
  let p = '/vrift';
  const depth = 1 + (next() % 3);
  for (let d = 0; d < depth; d++) p += `/${NAMES[next() % NAMES.length]}`;
  return p;
}
const parents = (p: string): string[] => {
  const out: string[] = [];
  for (let i = p.indexOf('/', 1); i > 0; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i));
  return out;
};

/** One random layer: directories and files with their parent directories; with `hide`, whiteouts and opaque markers too. */
function randomLayer(next: () => number, hide: boolean, first: boolean): Member[] {
  const ms: Member[] = first ? [{ name: 'vrift/', type: 'directory' }] : [];
  const n = 1 + (next() % 6);
  for (let i = 0; i < n; i++) {
    const p = randomPath(next);
    const op = next() % (hide ? 5 : 3);
    for (const d of parents(p)) ms.push({ name: `${d.slice(1)}/`, type: 'directory' });
    if (op === 0) ms.push({ name: `${p.slice(1)}/`, type: 'directory' });
    else if (op === 1) ms.push({ name: p.slice(1), body: 'x' });
    else if (op === 2) ms.push({ name: p.slice(1), type: 'symlink', linkname: 'x' });
    else if (op === 3) ms.push({ name: `${p.slice(1, p.lastIndexOf('/'))}/.wh.${p.slice(p.lastIndexOf('/') + 1)}` });
    else ms.push({ name: `${p.slice(1)}/.wh..wh..opq` });
  }
  return ms;
}

const T = { sec: 1n, nsec: 0 };
function entryOf(p: string, kind: PathKind, k: number): BlobEntry {
  return {
    path: Buffer.from(p, 'latin1'), mode: kind === 'd' ? 0o040755 : 0o100644, uid: 0, gid: 0, nlink: kind === 'd' ? 2 : 1,
    size: 0n, blocks: 0n, blksize: 4096, ino: SYNTHETIC_INO_BASE + BigInt(k + 1), dev: 0n, rdev: 0n, atime: T, mtime: T, ctime: T,
  };
}

test('the streamed check and the exact one agree with mergedVriftPaths on random layer stacks', async () => {
  const next = prngU32(2026);
  const seen = { plain: 0, hiding: 0, pass: 0, extra: 0, missing: 0, streamed: 0 };
  for (let c = 0; c < 300; c++) {
    const hide = next() % 3 === 0;
    const layers = Array.from({ length: 1 + (next() % 4) }, (_, i) => randomLayer(next, hide, i === 0));
    const tars = await Promise.all(layers.map((l) => makeTar(l)));
    // The oracle: every layer's paths kept, whiteouts and replacements applied.
    const disk = mergedVriftPaths((await scanImage(imageOf(tars, 'sha256:0'), 'oracle')).layers);
    // Only stacks a blob can describe: /vrift and every parent present as a directory (a layer that
    // names a path both as a directory and a file is not one).
    if (!disk.has('/vrift') || [...disk.keys()].some((p) => p !== '/vrift' && disk.get(p.slice(0, p.lastIndexOf('/'))) !== 'd')) continue;
    const keys = new Map(disk);
    const mode = next() % 4;
    if (mode === 1) {
      // The blob lacks a path (a leaf: the blob stays a complete tree).
      const leaves = [...keys.keys()].filter((p) => p !== '/vrift' && ![...keys.keys()].some((q) => q.startsWith(`${p}/`)));
      if (leaves.length === 0) continue;
      keys.delete(leaves[next() % leaves.length]);
    } else if (mode === 2) {
      const dirs = [...keys.entries()].filter(([, k]) => k === 'd').map(([p]) => p);
      keys.set(`${dirs[next() % dirs.length]}/zz${c}`, 'f');
    } else if (mode === 3) {
      // The blob keeps a path a layer names but a later one hid (whiteout, or its directory replaced by a file).
      const named = [...new Set(layers.flat().map((m) => `/${m.name.replace(/\/$/, '')}`))].filter((p) => !p.includes('/.wh.'));
      const hidden = named.filter((p) => !disk.has(p) && disk.has(p.slice(0, p.lastIndexOf('/'))));
      if (hidden.length === 0) continue;
      const p = hidden[next() % hidden.length];
      keys.set(p.slice(0, p.lastIndexOf('/')), 'd'); // a directory in the blob, whatever replaced it on disk
      keys.set(p, 'f');
    }
    const blob = encodeBlob({ roots: [Buffer.from('/vrift')], entries: [...keys.entries()].map(([p, k], i) => entryOf(p, k, i)), flags: F.H_DEV_RUNTIME });
    const blobLayer = await makeTar([{ name: 'usr/', type: 'directory' }, { name: 'usr/lib/', type: 'directory' }, { name: 'usr/lib/vrift/', type: 'directory' }, { name: 'usr/lib/vrift/psfs.blob', body: blob }]);
    const extra = [...disk.keys()].filter((p) => !keys.has(p)).sort();
    const missing = [...keys.keys()].filter((p) => !disk.has(p)).sort();
    const opens: number[] = [];
    const outcome = await readVriftBase(imageOf([...tars, blobLayer], sha(blob), opens), 'test:base').then(
      (b) => {
        const n = b.merge.blob.rows.count;
        b.merge.close();
        return `ok ${n}`;
      },
      (e: Error) => e.message,
    );
    const want = extra.length
      ? `merging onto test:base: the base's /vrift differs from its blob: ${extra.length} paths not in its blob (first: ${extra[0]}); a later layer changed /vrift (check with \`vrift verify\`), build from the original base`
      : missing.length
        ? `merging onto test:base: the base's /vrift differs from its blob: ${missing.length} blob paths missing (first: ${missing[0]}); a later layer changed /vrift (check with \`vrift verify\`), build from the original base`
        : `ok ${keys.size}`;
    expect([c, outcome]).toEqual([c, want]);
    // The blob's layer (no /vrift member) is read again only by the exact check: a plain union
    // that matches is decided by the streamed one; a mismatch always by the exact one (its counts).
    const exact = opens[tars.length] === 2;
    const kinds = new Map<string, string>();
    let replaced = false;
    for (const m of layers.flat()) {
      const p = `/${m.name.replace(/\/$/, '')}`;
      if (m.type !== 'directory' && kinds.get(p) === 'directory') replaced = true;
      kinds.set(p, m.type ?? 'file');
    }
    if (!hide && !replaced && outcome.startsWith('ok')) expect([c, exact]).toEqual([c, false]);
    if (!outcome.startsWith('ok')) expect([c, exact]).toEqual([c, true]);
    if (!exact) seen.streamed++;
    seen[hide ? 'hiding' : 'plain']++;
    seen[extra.length ? 'extra' : missing.length ? 'missing' : 'pass']++;
  }
  // Both checks and every outcome were exercised.
  expect(seen).toEqual(Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, v > 10 ? v : `${k}: only ${v}`])));
});

test('a blob member larger than 1 GiB is refused at its header, before its body is read', async () => {
  const tar = await makeTar([{ name: 'usr/lib/vrift/psfs.blob', body: 'x' }]);
  // Size field (octal, bytes 124..135) set to 2^30 + 1, header checksum (bytes 148..155) redone.
  tar.write(`${(2 ** 30 + 1).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  tar.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += tar[i];
  tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  await expect(readVriftBase(imageOf([tar], 'sha256:0'), 'test:big')).rejects.toThrow(
    `reading layer 1 of test:big: /usr/lib/vrift/psfs.blob is 1073741825 bytes, more than the 1073741824 a PSFS blob may have here; the image was not built by vrift, or is corrupt`,
  );
});

/** mergedVriftPaths as first written: each whiteout removes its victims in its own pass over the paths (the model). */
function mergedModel(layers: { hides: { vrift?: string }; vriftPaths: Map<string, PathKind> }[]): Map<string, PathKind> {
  const out = new Map<string, PathKind>();
  const removeUnder = (dir: string, keepSelf: boolean): void => {
    for (const k of [...out.keys()]) if (k.startsWith(`${dir}/`) || (!keepSelf && k === dir)) out.delete(k);
  };
  for (const l of layers) {
    if (l.hides.vrift !== undefined) out.clear();
    for (const [p, kind] of l.vriftPaths) {
      if (kind !== 'w') continue;
      const dir = p.slice(0, p.lastIndexOf('/'));
      const base = p.slice(p.lastIndexOf('/') + 1);
      if (base === '.wh..wh..opq') removeUnder(dir, true);
      else removeUnder(`${dir}/${base.slice(4)}`, false);
    }
    for (const [p, kind] of l.vriftPaths) {
      if (kind === 'w') continue;
      if (kind !== 'd' && out.get(p) === 'd') removeUnder(p, true);
      out.set(p, kind);
    }
  }
  return out;
}

test('mergedVriftPaths applies a layer\'s whiteouts in one pass with the result of one pass each (random stacks)', async () => {
  const next = prngU32(7);
  let removed = 0;
  for (let c = 0; c < 200; c++) {
    const layers = Array.from({ length: 2 + (next() % 4) }, (_, i) => randomLayer(next, true, i === 0));
    const scan = await scanImage(imageOf(await Promise.all(layers.map((l) => makeTar(l))), 'sha256:0'), 'model');
    const got = mergedVriftPaths(scan.layers);
    const want = mergedModel(scan.layers);
    expect([c, [...got.entries()].sort()]).toEqual([c, [...want.entries()].sort()]);
    const named = new Set(scan.layers.flatMap((l) => [...l.vriftPaths.keys()].filter((p) => !p.includes('/.wh.'))));
    if ([...named].some((p) => !got.has(p))) removed++;
  }
  expect(removed).toBeGreaterThan(50); // whiteouts did remove paths in many stacks
});

test('a base blob whose bucket or inode table is corrupt (checksums fixed) is refused, as `vrift inspect` calls it corrupt', async () => {
  // /vrift, /vrift/a, /vrift/a/x with identity tags 1..3 (st_ino = SYNTHETIC_INO_BASE + tag).
  const tagged = (p: string, kind: PathKind, k: number): BlobEntry => {
    const e = entryOf(p, kind, k);
    const t = { sec: 1n, nsec: k + 1 };
    return { ...e, atime: t, mtime: t, ctime: t };
  };
  const good = encodeBlob({ roots: [Buffer.from('/vrift')], entries: [tagged('/vrift', 'd', 0), tagged('/vrift/a', 'd', 1), tagged('/vrift/a/x', 'f', 2)], flags: F.H_DEV_RUNTIME | F.H_IDENTITY_TAG });
  const tree = await makeTar([{ name: 'vrift/', type: 'directory' }, { name: 'vrift/a/', type: 'directory' }, { name: 'vrift/a/x', body: 'x' }]);
  const baseWith = async (blob: Buffer): Promise<string> => {
    const blobLayer = await makeTar([{ name: 'usr/lib/vrift/psfs.blob', body: blob }]);
    return readVriftBase(imageOf([tree, blobLayer], sha(blob)), 'test:base').then((b) => {
      b.merge.close();
      return 'ok';
    }, (e: Error) => e.message);
  };
  /** `good` edited, then body_crc32 and header_crc32 redone. */
  const edited = (edit: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    edit(b);
    b.writeUInt32LE(crc32(b.subarray(F.HEADER_SIZE)), F.HEADER.bodyCrc32);
    b.writeUInt32LE(headerCrc32(b), F.HEADER.headerCrc32);
    return b;
  };
  expect(await baseWith(good)).toBe('ok');
  const h = readHeader(good);
  const used = Array.from({ length: h.bucketCount }, (_, s) => s).find((s) => good.readUInt32LE(Number(h.bucketsOff) + s * F.BUCKET_SIZE + F.BUCKET.entry) !== 0)!;
  const at = Number(h.bucketsOff) + used * F.BUCKET_SIZE;
  const hashFlipped = edited((b) => b.writeUInt32LE((b.readUInt32LE(at + F.BUCKET.hash) ^ 0x80000000) >>> 0, at + F.BUCKET.hash));
  expect(await baseWith(hashFlipped)).toMatch(new RegExp(`^merging onto test:base: the base's PSFS blob does not decode \\(decoding PSFS blob: bucket ${used} hash does not match the key of entry \\d;`));
  // Tag 1 now points at entry 2 (whose tag is 3).
  const tagMoved = edited((b) => b.writeUInt32LE(3, Number(h.inodesOff)));
  expect(await baseWith(tagMoved)).toMatch(/^merging onto test:base: the base's PSFS blob does not decode \(decoding PSFS blob: 1 inode tags point at entries whose mtime nanoseconds are not the tag;/);
  expect(() => checkBlob(tagMoved)).toThrow(/1 inode tags point at entries/); // what inspect reports too
});
