/**
 * Hostile blobs (issue 4, item 3): every member of the corpus from
 * test/hostile/corpus.ts is given to the real shim (shim/build/oracle under
 * LD_PRELOAD, every stat entry point, ~150 probe paths) and to psfs_core.c
 * under ASan + UBSan (shim/build/blobcheck-asan).
 *
 * - header faults: psfs_view_init rejects the blob, and the shim's output
 *   is byte-for-byte the kernel's (pure passthrough);
 * - body faults: no crash, no hang (hard timeout), no sanitizer report, and
 *   every path outside the domain answered exactly as the kernel;
 * - control: the valid blob IS used (its domain answers differ from the
 *   kernel's, whose /vrift-hostile does not exist), so the checks can fail.
 *
 * Also checks that the committed corpus (shim/corpus/, shim/fuzz/corpus/)
 * matches the generator; VRIFT_UPDATE_CORPUS=1 rewrites it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkHeader, decodeBlob } from '../../src/blob/reader';
import { fuzzSeeds, hostileCorpus, isOutside, probePaths, ROOT, type HostileBlob } from './corpus';
import { BLOBCHECK, buildAll, CORPUS_DIR, FUZZ_CORPUS_DIR, ORACLE, perPath, probeInput, run, shimEnv, writeFileMode } from './helpers';

const corpus = hostileCorpus();
const paths = probePaths();
const input = probeInput(paths);
let tmp: string;
let kernel: string[];

/** Files a directory should hold: name -> bytes. Rewrites it with VRIFT_UPDATE_CORPUS=1, else returns the mismatches. */
function syncDir(dir: string, want: Record<string, Buffer>): string[] {
  if (process.env.VRIFT_UPDATE_CORPUS === '1') {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    for (const [n, b] of Object.entries(want)) fs.writeFileSync(path.join(dir, n), b);
  }
  const have = fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
  const bad: string[] = [];
  const hint = '(after a deliberate format or generator change: VRIFT_UPDATE_CORPUS=1 npx jest test/hostile/hostile.test.ts, then commit shim/corpus and shim/fuzz/corpus)';
  for (const n of Object.keys(want).sort()) if (!have.includes(n) || !fs.readFileSync(path.join(dir, n)).equals(want[n])) bad.push(`${dir}/${n} differs or is missing ${hint}`);
  for (const n of have) if (!(n in want)) bad.push(`${dir}/${n} is not generated ${hint}`);
  return bad;
}

function manifest(): Buffer {
  return Buffer.from(corpus.map((c) => `${c.name}.blob\t${c.level}\t${c.bytes.length}\t${c.why}\n`).join(''));
}

beforeAll(() => {
  buildAll('hostile');
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-hostile-')));
  const k = run(ORACLE, [], { input });
  if (k.status !== 0) throw new Error(`oracle failed: ${k.stderr}`);
  kernel = perPath(k.stdout);
  expect(fs.existsSync(`${ROOT}`)).toBe(false); // the fixture relies on the root being absent on the host
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the committed corpus (shim/corpus, shim/fuzz/corpus) equals the generator output', () => {
  const files: Record<string, Buffer> = { 'MANIFEST.tsv': manifest() };
  for (const c of corpus) files[`${c.name}.blob`] = c.bytes;
  const bad = syncDir(CORPUS_DIR, files);
  for (const [target, seeds] of Object.entries(fuzzSeeds())) bad.push(...syncDir(path.join(FUZZ_CORPUS_DIR, target), seeds));
  expect(bad).toEqual([]);
  const levels = corpus.reduce<Record<string, number>>((a, c) => ({ ...a, [c.level]: (a[c.level] ?? 0) + 1 }), {});
  console.log(`hostile corpus: ${corpus.length} blobs (${JSON.stringify(levels)}), ${paths.length} probe paths`);
  expect(levels.header).toBeGreaterThanOrEqual(50);
  expect(levels.body).toBeGreaterThanOrEqual(30);
});

/** Run the oracle under the shim with blob `c`; asserts a clean exit in time. */
function underShim(c: HostileBlob): string[] {
  const f = writeFileMode(tmp, `${c.name}.blob`, c.bytes);
  const r = run(ORACLE, [], { input, env: shimEnv(f), timeoutMs: 30_000 });
  expect({ name: c.name, timedOut: r.timedOut, signal: r.signal, status: r.status }).toEqual({ name: c.name, timedOut: false, signal: null, status: 0 });
  return perPath(r.stdout);
}

/** blobcheck-asan on blob `c`: first line ("accept" / "reject <rc>") and per-path outcomes. */
function checked(c: HostileBlob): string[] {
  const f = writeFileMode(tmp, `${c.name}.blob`, c.bytes);
  const r = run(BLOBCHECK, [f], { input, timeoutMs: 60_000 });
  expect({ name: c.name, timedOut: r.timedOut, signal: r.signal, status: r.status, sanitizer: /Sanitizer|runtime error|CHECK failed/.test(r.stderr) ? r.stderr : '' }).toEqual({
    name: c.name,
    timedOut: false,
    signal: null,
    status: 0,
    sanitizer: '',
  });
  return r.stdout.split('\n').filter((l) => l.length > 0);
}

test('control: the valid blob is accepted and used (domain answers differ from the kernel, outside answers do not)', () => {
  const c = corpus.find((x) => x.name === 'valid')!;
  expect(checked(c)[0]).toBe('accept');
  const s = underShim(c);
  let differ = 0;
  paths.forEach((p, i) => {
    if (isOutside(p)) expect({ p, out: s[i] }).toEqual({ p, out: kernel[i] });
    else if (s[i] !== kernel[i]) differ++;
  });
  expect(differ).toBeGreaterThan(30);
  // Symlink cycles and the 41-hop chain pass through when followed (ELOOP is the kernel's), are answered by lstat.
  const o = checked(c);
  for (const p of [`${ROOT}/l-self`, `${ROOT}/l-a`, `${ROOT}/hop0`, `${ROOT}/l-up`, `${ROOT}/l-out`]) {
    const [ol, , of] = o[1 + paths.indexOf(p)].split(' ');
    expect({ p, ol, of }).toEqual({ p, ol: '1', of: '0' });
  }
  const [, , hop1] = o[1 + paths.indexOf(`${ROOT}/hop39`)].split(' ');
  expect(hop1).toBe('1'); // 39 hops: followed to "a" in the blob
});

const headerFaults = corpus.filter((c) => c.level === 'header');
// Valid variants other than the control (e.g. the tagged blob) get the body-fault checks too.
const bodyFaults = corpus.filter((c) => c.level === 'body' || (c.level === 'valid' && c.name !== 'valid'));

test.each(headerFaults.map((c) => [c.name, c.why, c] as const))('header fault %s (%s): rejected, every answer is the kernel\'s', (_n, _w, c) => {
  const first = checked(c)[0];
  expect(first).toMatch(/^reject -(22|95)$/);
  expect(underShim(c)).toEqual(kernel);
});

test.each(bodyFaults.map((c) => [c.name, c.why, c] as const))('body fault %s (%s): no crash, no hang, no sanitizer report, outside answers unchanged', (_n, _w, c) => {
  expect(checked(c)[0]).toBe('accept');
  const s = underShim(c);
  expect(s.length).toBe(kernel.length);
  paths.forEach((p, i) => {
    if (isOutside(p)) expect({ p, out: s[i] }).toEqual({ p, out: kernel[i] });
  });
});

test('hash-only match: a bucket whose hash matches but whose key differs is never an answer', () => {
  const c = corpus.find((x) => x.name === 'hash-only-match')!;
  const o = checked(c);
  const [ol, , of] = o[1 + paths.indexOf(`${ROOT}/a`)].split(' ');
  expect([ol, of]).not.toContain('1');
});

test('unreachable everywhere: every domain path passes through (answers equal the kernel)', () => {
  const c = corpus.find((x) => x.name === 'unreachable-all')!;
  expect(underShim(c)).toEqual(kernel);
});

test('the TS reader agrees with psfs_view_init on every blob, and its full check (decodeBlob) catches every body fault', () => {
  const verdicts = corpus.map((c) => {
    const code = checkHeader(c.bytes).code;
    return { name: c.name, c: checked(c)[0], ts: code === 0 ? 'accept' : `reject ${code}` };
  });
  expect(verdicts.filter((v) => v.c !== v.ts)).toEqual([]);
  // O(n) tool check (vrift verify / vrift-mkblob --verify): body CRC, keys, buckets, probe bound.
  for (const c of corpus) {
    if (c.level === 'valid') expect(() => decodeBlob(c.bytes)).not.toThrow();
    else expect({ name: c.name, thrown: (() => { try { decodeBlob(c.bytes); return false; } catch { return true; } })() }).toEqual({ name: c.name, thrown: true });
  }
});
