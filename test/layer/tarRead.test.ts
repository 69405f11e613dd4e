/**
 * readTarHeaders: names come back as the exact bytes, from archives written
 * by GNU tar in its three formats (gnu long names, ustar prefix, pax) and by
 * vrift's own writer (PAX hdrcharset=BINARY); body offsets point at the
 * member's bytes; damaged archives are refused.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { readTarHeaders, type RawTarHeader } from '../../src/layer/tarRead';
import { writeLayer } from '../../src/layer/tar';
import type { LayerEntry } from '../../src/layer/types';
import { VriftError } from '../../src/errors';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-tarread-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const LONG = 'd'.repeat(90) + '/' + 'e'.repeat(80); // > 100 bytes: ustar prefix / GNU 'L' / PAX path
const NAMES = [B('caf\xe9.txt'), B('\xff\xfe/n\xe4me'), B(`${LONG}/x\xe9`), B('plain.txt')];

async function readAll(file: string): Promise<{ headers: RawTarHeader[]; bodies: Map<string, Buffer> }> {
  const headers: RawTarHeader[] = [];
  const bodies = new Map<string, Buffer>();
  await readTarHeaders(createReadStream(file), (h) => {
    headers.push(h);
    if (h.type === 'file') return (b) => bodies.set(h.name.toString('latin1'), b);
  }, file);
  return { headers, bodies };
}

/** A source tree with the NAMES (files holding their own name), one symlink with a non-UTF-8 target and a hardlink. */
async function source(): Promise<string> {
  const src = path.join(dir, 'src');
  for (const n of NAMES) {
    const full = Buffer.concat([B(src + '/'), n]);
    await fsp.mkdir(Buffer.from(path.dirname(full.toString('latin1')), 'latin1'), { recursive: true });
    writeFileSync(full, n);
  }
  await fsp.symlink(B('caf\xe9.txt'), Buffer.concat([B(src + '/'), B('l\xe9nk')]));
  await fsp.link(Buffer.concat([B(src + '/'), NAMES[0]]), B(`${src}/hard`));
  return src;
}

test.each(['gnu', 'ustar', 'pax'])('GNU tar --format=%s: every name, link name and body as bytes', async (format) => {
  const src = await source();
  const file = path.join(dir, `${format}.tar`);
  execFileSync('tar', [`--format=${format}`, '-cf', file, '-C', src, '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { headers, bodies } = await readAll(file);
  const names = headers.map((h) => h.name.toString('latin1').replace(/^\.\//, '').replace(/\/$/, ''));
  for (const n of NAMES) expect(names).toContain(n.toString('latin1'));
  const link = headers.find((h) => h.type === 'symlink')!;
  expect(link.name.toString('latin1')).toBe('./l\xe9nk');
  expect(link.linkname).toEqual(B('caf\xe9.txt'));
  const hard = headers.find((h) => h.type === 'link')!;
  expect(hard.linkname.toString('latin1').replace(/^\.\//, '')).toMatch(/^(caf\xe9\.txt|hard)$/);
  expect(headers.filter((h) => h.type === 'directory').length).toBeGreaterThanOrEqual(3);
  // Each file body is the file's own name; the offset points at it in the tar.
  const tarBytes = readFileSync(file);
  for (const h of headers.filter((x) => x.type === 'file')) {
    const body = bodies.get(h.name.toString('latin1'))!;
    expect(body).toEqual(tarBytes.subarray(h.offset, h.offset + h.size));
    expect(body.length).toBeGreaterThan(0);
  }
  for (const n of NAMES) expect([...bodies.values()].some((b) => b.equals(n))).toBe(true);
});

test('vrift\'s own layer (PAX path/linkpath with hdrcharset=BINARY) reads back byte for byte', async () => {
  const T = { sec: 1000n, nsec: 0 };
  const attrs = { uid: 0, gid: 0, mtime: T };
  const entries: LayerEntry[] = [
    { type: 'directory', path: B('/vrift'), mode: 0o040755, ...attrs },
    { type: 'file', path: B('/vrift/caf\xe9'), mode: 0o100644, ...attrs, size: 2n, source: { content: B('hi') }, nlink: 2 },
    { type: 'hardlink', path: B(`/vrift/${'h'.repeat(120)}\xff`), linkTo: B('/vrift/caf\xe9'), mode: 0o100644, ...attrs, size: 2n, nlink: 2 },
    { type: 'symlink', path: B('/vrift/s\xfe'), mode: 0o120777, ...attrs, target: B('caf\xe9') },
  ];
  const l = await writeLayer(entries, path.join(dir, 'l.tgz'));
  const tarFile = path.join(dir, 'l.tar');
  writeFileSync(tarFile, gunzipSync(readFileSync(l.path)));
  const { headers, bodies } = await readAll(tarFile);
  expect(headers.map((h) => [h.type, h.name.toString('latin1'), h.linkname.toString('latin1')])).toEqual([
    ['directory', 'vrift/', ''],
    ['file', 'vrift/caf\xe9', ''],
    ['link', `vrift/${'h'.repeat(120)}\xff`, 'vrift/caf\xe9'],
    ['symlink', 'vrift/s\xfe', 'caf\xe9'],
  ]);
  expect(bodies.get('vrift/caf\xe9')).toEqual(B('hi'));
});

test('a damaged header and a truncated archive are refused with VriftError', async () => {
  const src = await source();
  const file = path.join(dir, 'a.tar');
  execFileSync('tar', ['--format=pax', '-cf', file, '-C', src, '.']);
  const bytes = readFileSync(file);
  const at = (await readAll(file)).headers.find((h) => h.name.toString('latin1') === './plain.txt')!.offset - 512;
  const bad = Buffer.from(bytes);
  bad[at + 5] ^= 0x20; // a name byte of plain.txt's header: its checksum no longer matches
  writeFileSync(path.join(dir, 'bad.tar'), bad);
  await expect(readAll(path.join(dir, 'bad.tar'))).rejects.toThrow(new RegExp(`not a readable tar archive \\(bad header checksum at byte ${at}\\)`));
  writeFileSync(path.join(dir, 'short.tar'), bytes.subarray(0, 1024 + 100));
  const err = await readAll(path.join(dir, 'short.tar')).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(VriftError);
  expect((err as Error).message).toMatch(/unexpected end of data/);
});

test('a BodySink gets a body in pieces as it streams (bytes equal the buffered body), past the buffered size limit', async () => {
  const src = path.join(dir, 'big');
  await fsp.mkdir(src);
  // 3 MiB + 5 bytes of a pattern: several stream chunks, not a multiple of 512.
  const big = Buffer.alloc(3 * 1024 * 1024 + 5);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 9)) & 0xff;
  writeFileSync(path.join(src, 'a.bin'), big);
  writeFileSync(path.join(src, 'z.txt'), 'after');
  const file = path.join(dir, 'big.tar');
  execFileSync('tar', ['--format=pax', '-cf', file, '-C', src, 'a.bin', 'z.txt']);
  const pieces: Buffer[] = [];
  let ended = 0;
  const seen: string[] = [];
  const whole = new Map<string, Buffer>();
  await readTarHeaders(createReadStream(file, { highWaterMark: 64 * 1024 }), (h) => {
    seen.push(h.name.toString('latin1'));
    if (h.name.toString('latin1') === 'a.bin') return { chunk: (b) => pieces.push(Buffer.from(b)), end: () => ended++ };
    return (b) => whole.set(h.name.toString('latin1'), b);
  }, file, 1024); // 1 KiB: a function consumer would not get a.bin
  expect(seen).toEqual(['a.bin', 'z.txt']);
  expect(ended).toBe(1);
  expect(pieces.length).toBeGreaterThan(1);
  expect(Buffer.concat(pieces).equals(big)).toBe(true);
  expect(whole.get('z.txt')).toEqual(B('after')); // the member after it is read from the right offset
});
