/**
 * Helpers for the hostile-blob, truncation and security tests (issue 4):
 * build the extra shim targets, run a program with or without the shim
 * under a hard timeout, and split oracle output per probed path.
 */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildShim, BUILD, SHIM, ORACLE, SHIM_DIR } from '../shim/helpers';

export { BUILD, SHIM, ORACLE, SHIM_DIR };
export const REPO = path.resolve(__dirname, '../..');
export const BLOBCHECK = path.join(BUILD, 'blobcheck-asan');
export const CORPUS_DIR = path.join(SHIM_DIR, 'corpus');
export const FUZZ_CORPUS_DIR = path.join(SHIM_DIR, 'fuzz', 'corpus');

/**
 * Build libvrift.so, the oracle and the given extra make targets
 * ("hostile", "stress", "fuzz"), serialized with the shim tests' flock.
 */
export function buildAll(...targets: string[]): void {
  buildShim();
  if (targets.length > 0) execFileSync('flock', [path.join(BUILD, '.make.lock'), 'make', '-s', '-C', SHIM_DIR, ...targets], { stdio: 'pipe' });
}

/** Outcome of run(): exit status or signal, and whether the timeout killed it. */
export interface Ran {
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Run `file args` with a clean environment (PATH, plus `env`), stdin
 * `input`, working directory `cwd` (default "/"), killed with SIGKILL after `timeoutMs` (ms). Never throws for a
 * failing child: the caller asserts on status/signal/timedOut.
 */
export function run(file: string, args: string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; timeoutMs?: number; uid?: number; gid?: number; cwd?: string } = {}): Ran {
  const r: SpawnSyncReturns<Buffer> = spawnSync(file, args, {
    cwd: opts.cwd ?? '/', // relative probe paths resolve against a directory nobody writes
    input: opts.input,
    env: { PATH: process.env.PATH, ...opts.env },
    timeout: opts.timeoutMs ?? 20_000,
    killSignal: 'SIGKILL',
    maxBuffer: 1 << 28,
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
  });
  const err = r.error as NodeJS.ErrnoException | undefined;
  if (err && err.code !== 'ETIMEDOUT') throw err;
  return {
    status: r.status,
    signal: r.signal,
    timedOut: err?.code === 'ETIMEDOUT',
    stdout: r.stdout?.toString('latin1') ?? '',
    stderr: r.stderr?.toString('latin1') ?? '',
  };
}

/** Environment that preloads the shim with `blob`. */
export function shimEnv(blob: string): NodeJS.ProcessEnv {
  return { LD_PRELOAD: SHIM, VRIFT_BLOB: blob };
}

/** Oracle input for probe paths (markers "<NULL>"/"<EMPTY>" pass as is). */
export function probeInput(paths: string[]): Buffer {
  return Buffer.from(paths.map((p) => `${p}\n`).join(''), 'latin1');
}

/** Split oracle stdout into one block of lines per probed path (the "## n" markers). */
export function perPath(stdout: string): string[] {
  return stdout.split(/^## /m).slice(1);
}

/** Write `bytes` to dir/name with `mode` (the shim needs a root/euid-owned, not group/other-writable file). */
export function writeFileMode(dir: string, name: string, bytes: Buffer, mode = 0o644): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, bytes);
  fs.chmodSync(f, mode);
  return f;
}
