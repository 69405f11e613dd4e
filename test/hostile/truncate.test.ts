/**
 * A blob replaced or truncated while processes have it mapped (issue 4,
 * item 3; decision in docs/shim-safety.md).
 *
 * The shim maps the blob MAP_PRIVATE, read-only. MAP_PRIVATE does not copy
 * pages that are never written: they stay the file's page-cache pages, so a
 * truncation of the file takes them away and the next access to them raises
 * SIGBUS. Rename-replacement (what writeBlobFile does: temp file, fsync,
 * rename) creates a new inode; processes keep the old one mapped and stay
 * correct, new processes map the new one.
 *
 * shim/build/stress-statserve (test/stress/statserve.c) stats one path per
 * stdin line and prints "<rc> <errno> <st_size>".
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { writeBlobFile, type BlobEntry } from '../../src/blob/writer';
import { BUILD, buildAll, run, shimEnv } from './helpers';

const SERVE = path.join(BUILD, 'stress-statserve');
const ROOT = '/vrift-truncate';
const N = 400; // entries: the blob spans ~15 pages, most entries far past the first page
let tmp: string;
let blob: string;

function tree(sizeBase: number): { roots: Buffer[]; entries: BlobEntry[] } {
  const t = { sec: 1_700_000_000n, nsec: 0 };
  const e = (p: string, mode: number, size: number, ino: number): BlobEntry => ({
    path: Buffer.from(p), mode, uid: 0, gid: 0, nlink: 1, size: BigInt(size), blocks: 0n, blksize: 4096,
    ino: BigInt(ino), dev: 1n, rdev: 0n, atime: t, mtime: t, ctime: t,
  });
  const entries = [e(ROOT, 0o040755, 4096, 1)];
  for (let i = 0; i < N; i++) entries.push(e(`${ROOT}/f${String(i).padStart(4, '0')}`, 0o100644, sizeBase + i, 2 + i));
  return { roots: [Buffer.from(ROOT)], entries };
}

/** A long-running statserve under the shim; ask() sends a path and awaits the answer line (null once it died). */
class Server {
  readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiter?: (l: string | null) => void;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(blobFile: string) {
    this.child = spawn(SERVE, [], { env: { PATH: process.env.PATH, ...shimEnv(blobFile) } });
    readline.createInterface({ input: this.child.stdout }).on('line', (l) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(l);
      } else this.lines.push(l);
    });
    this.exited = new Promise((res) => this.child.on('exit', (code, signal) => {
      this.waiter?.(null);
      res({ code, signal });
    }));
  }

  ask(p: string): Promise<string | null> {
    return new Promise((res) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return res(null);
      this.waiter = res;
      this.child.stdin.write(`${p}\n`);
    });
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    await this.exited;
  }
}

beforeAll(() => {
  buildAll('stress');
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-trunc-')));
  blob = path.join(tmp, 'psfs.blob');
  expect(fs.existsSync(ROOT)).toBe(false); // so every blob answer differs from the kernel's
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const last = `${ROOT}/f${String(N - 1).padStart(4, '0')}`;

test('rename-replace (writeBlobFile) under a running process: it keeps answering from the old blob, new processes see the new one', async () => {
  await writeBlobFile(blob, tree(1000));
  const s = new Server(blob);
  try {
    expect(await s.ask(last)).toBe(`0 0 ${1000 + N - 1}`);
    const inode = fs.statSync(blob).ino;
    await writeBlobFile(blob, tree(5000)); // temp + fsync + rename: a new inode
    expect(fs.statSync(blob).ino).not.toBe(inode);
    for (let i = 0; i < N; i += 37) expect(await s.ask(`${ROOT}/f${String(i).padStart(4, '0')}`)).toBe(`0 0 ${1000 + i}`);
    const fresh = run(SERVE, [], { input: `${last}\n`, env: shimEnv(blob) });
    expect(fresh.stdout).toBe(`0 0 ${5000 + N - 1}\n`);
    // Even truncating the NEW file in place leaves the old mapping intact (different inode).
    fs.truncateSync(blob, 4096);
    expect(await s.ask(last)).toBe(`0 0 ${1000 + N - 1}`);
  } finally {
    await s.close();
  }
  expect(await s.exited).toEqual({ code: 0, signal: null });
});

test('truncate-in-place of a mapped blob: the next access to a lost page is SIGBUS (why the builder only ever renames)', async () => {
  await writeBlobFile(blob, tree(1000));
  const s = new Server(blob);
  expect(await s.ask(last)).toBe(`0 0 ${1000 + N - 1}`);
  fs.truncateSync(blob, 4096); // what `cp new.blob psfs.blob` or `> psfs.blob` would do
  expect(await s.ask(last)).toBeNull();
  expect(await s.exited).toEqual({ code: null, signal: 'SIGBUS' });
  // A process started after the truncation sees a short file: file_size mismatch, blob rejected, kernel answers.
  const fresh = run(SERVE, [], { input: `${last}\n`, env: shimEnv(blob) });
  expect(fresh.stdout).toBe('-1 2 0\n');
});
