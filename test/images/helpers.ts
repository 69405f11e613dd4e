/**
 * Shared by the image tests (issue 6): local bases, the vrift tool image built
 * from the top-level Dockerfile with the classic builder, and in-container
 * stat probes (the kernel as oracle, strace for syscall counts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'bin', 'vrift.js');
export const PYTHON_BASE = 'vrift-test/bookworm-python:latest';
export const NODE_BASE = 'vrift-test/bookworm-node:latest';
/** The tool image the tests build from the top-level Dockerfile. */
export const TOOL_IMAGE = 'vrift-test/vrift-tool:latest';

/** Run a command; throw with its (tail of) output when it fails. Returns stdout. */
export function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeout?: number; cwd?: string; input?: string } = {}): string {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8', maxBuffer: 256 << 20, timeout: opts.timeout ?? 600_000, cwd: opts.cwd, input: opts.input,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${String(r.stdout).slice(-3000)}\n${String(r.stderr).slice(-3000)}`);
  }
  return String(r.stdout);
}

/** spawnSync with the exit status kept (for commands expected to fail). */
export function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, timeout: 600_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/**
 * `docker build` with the classic builder (DOCKER_BUILDKIT=0: the engine here is
 * 20.10 without buildx) and the host network (no bridge; RUN steps that fetch from
 * Debian or npm need it). Returns the build log.
 */
export function dockerBuild(context: string, tag: string, buildArgs: Record<string, string>, opts: { file?: string; target?: string } = {}): string {
  const args = ['build', '--network', 'host', '-t', tag];
  for (const [k, v] of Object.entries(buildArgs)) args.push('--build-arg', `${k}=${v}`);
  if (opts.file) args.push('-f', opts.file);
  if (opts.target) args.push('--target', opts.target);
  args.push(context);
  // A cold build of the tool image (apt's npm, toolchains, npm ci) takes ~9 min here.
  return sh('docker', args, { env: { DOCKER_BUILDKIT: '0' }, timeout: 1_200_000 });
}

/**
 * The local CA certificates this machine trusts on top of Debian's
 * (/usr/local/share/ca-certificates/*.crt, what update-ca-certificates adds), as the
 * tool Dockerfile's EXTRA_CA_CERTS build argument: npm ci in the builder stage then
 * trusts a TLS-intercepting proxy the host trusts. Empty when there are none.
 */
function extraCaCerts(): Record<string, string> {
  const dir = '/usr/local/share/ca-certificates';
  let pem = '';
  try {
    for (const f of readdirSync(dir).sort()) if (f.endsWith('.crt')) pem += readFileSync(path.join(dir, f), 'utf8');
  } catch {
    return {};
  }
  return pem ? { EXTRA_CA_CERTS: pem } : {};
}

let toolBuilt = false;

/**
 * Make the local bases (scripts/base-images.sh: cached debootstraps) and build
 * the tool image from this checkout's top-level Dockerfile on them. Layers are
 * cached by the engine: only changed sources rebuild (npm ci stays cached while
 * package-lock.json does not change).
 */
export function ensureToolImage(): void {
  if (toolBuilt) return;
  if (spawnSync('docker', ['version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('the Docker engine does not answer; run scripts/setup-machine.sh dockerd');
  }
  sh('bash', [path.join(ROOT, 'scripts', 'base-images.sh')]);
  dockerBuild(ROOT, TOOL_IMAGE, { BASE: NODE_BASE, BUILDER_BASE: NODE_BASE, ...extraCaCerts() });
  toolBuilt = true;
}

/**
 * Python run inside a container: lstat(2) of every path under `root` (the
 * walk itself uses scandir, whose d_type needs no stat), one JSON object
 * path -> fields on stdout. Through the shim when LD_PRELOAD is set.
 */
export const LSTAT_PY = `
import os, sys, json
root = sys.argv[1]
F = ('st_mode', 'st_ino', 'st_dev', 'st_nlink', 'st_uid', 'st_gid', 'st_size', 'st_blocks', 'st_blksize', 'st_mtime_ns', 'st_ctime_ns')
out = {}
def rec(p):
    s = os.lstat(p)
    out[p] = {f: getattr(s, f) for f in F}
    out[p]['st_ino'] = str(s.st_ino)  # synthetic st_ino is above 2**53: not a JSON number
stack = [root]
rec(root)
while stack:
    d = stack.pop()
    with os.scandir(d) as it:
        for e in it:
            rec(e.path)
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
print(json.dumps(out))
`;

export type StatMap = Record<string, Record<string, number | string>>;

/** Fields the shim answers exactly as the kernel does (identity policy: not st_ino, st_ctime). */
export const KERNEL_FIELDS = ['st_mode', 'st_dev', 'st_nlink', 'st_uid', 'st_gid', 'st_size', 'st_blocks', 'st_blksize', 'st_mtime_ns'];

/** Keep only `fields` of every path. */
export function pick(m: StatMap, fields: string[]): StatMap {
  const o: StatMap = {};
  for (const [p, s] of Object.entries(m)) o[p] = Object.fromEntries(fields.map((f) => [f, s[f]]));
  return o;
}

/** Paths grouped by st_ino (hardlink classes), each class sorted, classes sorted: comparable across ino numbering. */
export function inodeClasses(m: StatMap): string[][] {
  const by = new Map<string, string[]>();
  for (const [p, s] of Object.entries(m)) {
    const k = String(s.st_ino);
    (by.get(k) ?? by.set(k, []).get(k)!).push(p);
  }
  return [...by.values()].map((c) => c.sort()).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/**
 * Count stat-family syscalls naming /vrift paths while `cmd` runs in `image`
 * (strace -f inside the container; needs strace in the image and the ptrace
 * capability). `env` adds -e options (e.g. LD_PRELOAD= to switch the shim off).
 * Returns counts on /vrift paths and in total, and the command's stdout.
 */
export function straceCount(image: string, cmd: string[], env: string[] = [], extra: string[] = []): { vrift: number; all: number; out: string; lines: string[] } {
  const script = 'strace -f -qq -e trace=%stat,%lstat,%fstat -o /tmp/trace "$@" >/tmp/out 2>&1; rc=$?; ' +
    'printf "%s %s\\n" "$(grep -c "\\"/vrift" /tmp/trace)" "$(wc -l </tmp/trace)"; grep "\\"/vrift" /tmp/trace | head -n 20 | sed "s/^/@@ /"; cat /tmp/out; exit $rc';
  const args = ['run', '--rm', '--network', 'none', '--cap-add', 'SYS_PTRACE', ...extra];
  for (const e of env) args.push('-e', e);
  const out = sh('docker', [...args, '--entrypoint', 'sh', image, '-c', script, 'sh', ...cmd]);
  const [first, ...rest] = out.split('\n');
  const [v, a] = first.trim().split(/\s+/).map(Number);
  const lines = rest.filter((l) => l.startsWith('@@ ')).map((l) => l.slice(3));
  return { vrift: v, all: a, out: rest.filter((l) => !l.startsWith('@@ ')).join('\n'), lines };
}

/** Start `image` detached (sleeping), returning its id and host pid (its rootfs is /proc/<pid>/root). */
export function startContainer(image: string): { id: string; pid: number } {
  const id = sh('docker', ['run', '-d', '--network', 'none', '--entrypoint', 'sleep', image, '600']).trim();
  const pid = Number(sh('docker', ['inspect', '-f', '{{.State.Pid}}', id]).trim());
  return { id, pid };
}

export function removeContainer(id: string): void {
  spawnSync('docker', ['rm', '-f', id], { stdio: 'ignore' });
}

/** Exec in a running container; stdout. */
export function dockerExec(id: string, cmd: string[], env: string[] = []): string {
  const args = ['exec'];
  for (const e of env) args.push('-e', e);
  return sh('docker', [...args, id, ...cmd]);
}

export { execFileSync };
