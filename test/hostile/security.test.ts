/**
 * Security rules of libvrift.so, tested as an unprivileged user (uid/gid
 * 65534) (issue 4, item 5):
 *
 * - a blob file that is writable by group or others, owned by another user,
 *   or not a regular file is ignored (pure passthrough);
 * - in secure-execution mode (AT_SECURE: a set-uid program) VRIFT_BLOB is
 *   ignored. LD_PRELOAD itself is dropped by ld.so for such programs, so the
 *   test links the shim into the program (DT_NEEDED, absolute path) to have
 *   it loaded and initialised under AT_SECURE;
 * - a path under a 0700 directory is never answered: the kernel's EACCES
 *   stays the answer.
 *
 * A canary blob (one entry's st_size changed) shows whether a run used the
 * blob: the probe prints st_size of the canary path in every run.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import { BUILD, buildAll, REPO, run, SHIM, shimEnv } from './helpers';

const NOBODY = 65534;
const PROBE = path.join(BUILD, 'stress-probe');
let tmp: string;
let root: string;
let canaryBytes: Buffer;
let probePaths: string[];

beforeAll(async () => {
  buildAll('stress');
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-sec-')));
  fs.chmodSync(tmp, 0o755);
  root = path.join(tmp, 'dom');
  fs.mkdirSync(path.join(root, 'priv', 'inner'), { recursive: true });
  fs.writeFileSync(path.join(root, 'priv', 'secret'), 'secret');
  fs.chmodSync(path.join(root, 'priv'), 0o700);
  fs.writeFileSync(path.join(root, 'pub'), 'pub');
  fs.writeFileSync(path.join(root, 'canary'), '');
  fs.mkdirSync(path.join(tmp, 'blobs'));
  fs.chmodSync(path.join(tmp, 'blobs'), 0o755);
  await scanHostTree(root);
  const tree = await scanHostTree(root);
  canaryBytes = encodeBlob({ ...tree, entries: tree.entries.map((e) => (e.path.toString().endsWith('/canary') ? { ...e, size: 5n } : e)) });
  probePaths = [`${root}/canary`, `${root}/pub`, `${root}/priv`, `${root}/priv/secret`, `${root}/priv/missing`, `${root}/priv/inner`, `${root}/priv/inner/x`, `${root}/priv/.`, `${root}/priv/`];
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A copy of the canary blob with the given mode and owner. */
function blobFile(name: string, mode: number, uid = 0, gid = 0): string {
  const f = path.join(tmp, 'blobs', name);
  fs.writeFileSync(f, canaryBytes);
  fs.chownSync(f, uid, gid);
  fs.chmodSync(f, mode); // after chown: chown clears set-id bits, not these
  return f;
}

/** The probe's lines as `uid`, with or without the shim, plus the canary size. */
function probe(opts: { blob?: string; uid?: number; file?: string; env?: NodeJS.ProcessEnv } = {}): { lines: string[]; canary: string } {
  const r = run(opts.file ?? PROBE, probePaths, { env: { ...(opts.blob ? shimEnv(opts.blob) : {}), ...opts.env }, uid: opts.uid ?? NOBODY, timeoutMs: 10_000 });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  const lines = r.stdout.trim().split('\n');
  return { lines, canary: lines[0].split(' ')[4] };
}

test('control: a root-owned 0644 blob is used by an unprivileged process (canary size 5; the kernel says 0)', () => {
  expect(probe().canary).toBe('0');
  expect(probe({ blob: blobFile('ok.blob', 0o644) }).canary).toBe('5');
});

test('a blob owned by the effective uid (0644) is used', () => {
  expect(probe({ blob: blobFile('own.blob', 0o644, NOBODY, NOBODY) }).canary).toBe('5');
});

test.each([
  ['group-writable (0664)', 0o664, 0],
  ['other-writable (0646)', 0o646, 0],
  ['world-writable (0666)', 0o666, 0],
  ['owned by another user (uid 1234, 0644)', 0o644, 1234],
  ['owned by another user, euid-readable only via group (uid 1234, 0640, gid 65534)', 0o640, 1234],
])('a blob %s is ignored: every answer is the kernel\'s', (_what, mode, uid) => {
  const f = blobFile(`b-${mode.toString(8)}-${uid}.blob`, mode, uid, uid === 1234 ? NOBODY : 0);
  expect(probe({ blob: f }).lines).toEqual(probe().lines);
});

// The FIFO case hung every process in the shim's constructor (open(2) waits for a writer) until
// shim/libvrift.c opened the blob O_NONBLOCK (commit 9ddc007): a hang here is a regression.
test('a blob path naming a directory, a fifo or a missing file is ignored (no hang)', () => {
  const fifo = path.join(tmp, 'blobs', 'fifo');
  execFileSync('mkfifo', ['-m', '0644', fifo]);
  const kernel = probe().lines;
  for (const f of [path.join(tmp, 'blobs'), fifo, path.join(tmp, 'blobs', 'missing.blob')]) expect(probe({ blob: f }).lines).toEqual(kernel);
});

test('paths under a 0700 directory are not answered: EACCES stays the kernel\'s (the canary shows the shim was active)', () => {
  const kernel = probe().lines;
  expect(kernel.filter((l) => / -1 13 /.test(l)).length).toBeGreaterThanOrEqual(4); // EACCES really happens for uid 65534
  const shim = probe({ blob: blobFile('ok2.blob', 0o644) });
  expect(shim.canary).toBe('5');
  expect(shim.lines.slice(1)).toEqual(kernel.slice(1));
});

test('secure-execution mode (set-uid root, or file capabilities, run by uid 65534): VRIFT_BLOB is ignored', () => {
  // The probe linked against a copy of the shim (DT_NEEDED by absolute path: ld.so loads it even under AT_SECURE).
  const lib = path.join(tmp, 'lib');
  fs.mkdirSync(lib);
  fs.chmodSync(lib, 0o755);
  fs.copyFileSync(SHIM, path.join(lib, 'libvrift.so'));
  const exe = path.join(tmp, 'probe-linked');
  execFileSync('cc', ['-O2', '-o', exe, path.join(REPO, 'test/stress/probe.c'), '-Wl,--no-as-needed', path.join(lib, 'libvrift.so')]);
  const needed = execFileSync('readelf', ['-d', exe]).toString();
  expect(needed).toMatch(/NEEDED.*libvrift\.so/);
  const f = blobFile('secure.blob', 0o644);
  // Not set-uid: the linked shim honours VRIFT_BLOB (so the check below can fail).
  fs.chmodSync(exe, 0o755);
  expect(probe({ file: exe, env: { VRIFT_BLOB: f } }).canary).toBe('5');
  // Set-uid root: AT_SECURE, VRIFT_BLOB ignored (the default blob does not exist here): kernel answers.
  fs.chownSync(exe, 0, 0);
  fs.chmodSync(exe, 0o4755);
  const secure = probe({ file: exe, env: { VRIFT_BLOB: f } });
  expect(secure.canary).toBe('0');
  // As root (euid 0) it sees no EACCES; compare with the kernel answers the same set-uid program gives without the env.
  expect(secure.lines).toEqual(probe({ file: exe }).lines);
  // File capabilities set AT_SECURE too (no set-uid bit; the process keeps uid 65534).
  const capExe = path.join(tmp, 'probe-cap');
  fs.copyFileSync(exe, capExe);
  fs.chmodSync(capExe, 0o755);
  execFileSync('setcap', ['cap_net_bind_service+ep', capExe]);
  expect(probe({ file: capExe, env: { VRIFT_BLOB: f } }).canary).toBe('0');
});
