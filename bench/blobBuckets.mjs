#!/usr/bin/env node
// bench/blobBuckets.mjs - peak RSS and time of writeBlobRows for a synthetic
// tree of ~N entries (the bucket table's memory, src/blob/buckets.ts).
//
// The rows are computed from k (no per-entry storage): root /r, D directories
// /r/dNNNNNN of F files fNNNNN each, so n = 1 + D * (F + 1). Paths are fixed
// width, hence byte order = k order. Run it under GNU time:
//
//   npm run build:ts
//   /usr/bin/time -f '%M KiB peak RSS, %e s' node bench/blobBuckets.mjs [entries] [distDir]
//
// entries defaults to 2000001 (D = 2000, F = 999); distDir defaults to ./dist
// (point it at a copy of an older build to compare). The blob is written to
// a temp directory and removed; its digest is printed so that two builds can
// be compared byte for byte.
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const want = Number(process.argv[2] ?? 2_000_001);
const dist = path.resolve(process.argv[3] ?? 'dist');
const { writeBlobRows } = createRequire(import.meta.url)(path.join(dist, 'blob/writer.js'));

const F = 999;
const D = Math.max(1, Math.round((want - 1) / (F + 1)));
const n = 1 + D * (F + 1);
const pad = (v, w) => String(v).padStart(w, '0');
const pathOf = (k) => {
  if (k === 0) return Buffer.from('/r');
  const j = k - 1;
  const d = Math.floor(j / (F + 1));
  const r = j % (F + 1);
  return Buffer.from(r === 0 ? `/r/d${pad(d, 6)}` : `/r/d${pad(d, 6)}/f${pad(r - 1, 5)}`);
};
const isDir = (k) => k === 0 || (k - 1) % (F + 1) === 0;
const rows = {
  count: n,
  path: pathOf,
  mode: (k) => (isDir(k) ? 0o40755 : 0o100644),
  uid: () => 0,
  gid: () => 0,
  nlink: (k) => (isDir(k) ? 2 : 1),
  size: (k) => (isDir(k) ? 4096n : BigInt(k % 5000)),
  blocks: () => 8n,
  blksize: () => 4096,
  ino: (k) => BigInt(k + 1),
  dev: () => 0x803n,
  rdev: () => 0n,
  atimeSec: () => 1_700_000_000n,
  atimeNsec: () => 0,
  mtimeSec: () => 1_700_000_000n,
  mtimeNsec: () => 0,
  ctimeSec: () => 1_700_000_000n,
  ctimeNsec: () => 0,
  target: () => undefined,
  uncertain: () => false,
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-bench-buckets-'));
try {
  const t0 = process.hrtime.bigint();
  const out = await writeBlobRows(path.join(dir, 'psfs.blob'), rows, [Buffer.from('/r')]);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const buf = Buffer.alloc(128);
  const fd = fs.openSync(path.join(dir, 'psfs.blob'), 'r');
  fs.readSync(fd, buf, 0, 128, 0);
  fs.closeSync(fd);
  // Header offsets: src/blob/format.ts HEADER.
  const header = { bucketCount: buf.readUInt32LE(48), maxProbe: buf.readUInt32LE(52), hashSeed: buf.readUInt32LE(80) };
  console.log(JSON.stringify({ entries: n, size: out.size, digest: out.digest, ...header, writeBlobRowsSeconds: Number(s.toFixed(2)) }));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
