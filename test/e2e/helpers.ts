import { execFileSync, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'bin', 'vrift.js');
export const BASE_IMAGE = 'vrift-test/bookworm-python:latest';
export const DEB_CACHE = '/var/cache/vrift/debs';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run the real CLI (dist/, built in beforeAll) with `args`. */
export function vrift(args: string[], opts: SpawnSyncOptions = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Run a command; throw with its stderr when it fails. */
export function sh(cmd: string, args: string[], opts: { input?: string; timeout?: number } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['pipe', 'pipe', 'pipe'], timeout: opts.timeout ?? 300_000, input: opts.input });
}

/** Whether the engine has an image named `ref`. */
export function imageExists(ref: string): boolean {
  return spawnSync('docker', ['image', 'inspect', ref], { stdio: 'ignore' }).status === 0;
}

/**
 * The .deb of `pkg` from the Debian archive, cached in /var/cache/vrift/debs
 * (downloaded with `apt-get download` on first use).
 */
export function debFile(pkg: string): string {
  mkdirSync(DEB_CACHE, { recursive: true });
  const find = () => readdirSync(DEB_CACHE).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  let f = find();
  if (!f) {
    execFileSync('apt-get', ['download', pkg], { cwd: DEB_CACHE, stdio: 'ignore' });
    f = find();
  }
  if (!f) throw new Error(`apt-get download ${pkg} left no .deb in ${DEB_CACHE}`);
  return path.join(DEB_CACHE, f);
}

/** Fail early, with what to do, when the engine, base image or shim is missing. */
export function requireEnvironment(): void {
  if (spawnSync('docker', ['version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('the Docker engine does not answer; start it: dockerd --iptables=false --ip6tables=false --bridge=none &');
  }
  if (!imageExists(BASE_IMAGE)) throw new Error(`base image ${BASE_IMAGE} is missing; run scripts/setup-machine.sh`);
  if (!existsSync(path.join(ROOT, 'shim', 'build', 'libvrift.so'))) sh('make', ['-C', path.join(ROOT, 'shim')]);
  sh('npx', ['tsc', '-p', path.join(ROOT, 'tsconfig.json')]);
}
