/**
 * A small vrift image for the inspect and verify tests, built with the real
 * CLI onto the local bookworm + python3 image: nested directories, duplicate
 * files (dedup), an executable, relative symlinks to a file and to a
 * directory, a dangling symlink, and a directory large enough for an htree.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BASE_IMAGE, requireEnvironment, vrift } from '../e2e/helpers';

export interface BuiltFixture {
  work: string;
  tree: string;
  tag: string;
  archive: string;
  summary: {
    configDigest: string;
    manifestDigest: string;
    blobDigest: string;
    layers: { role: string; digest: string; diffID: string; size: number }[];
    stats: { files: number; dirs: number; symlinks: number; casObjects: number; bytes: number; dedupRatio: number };
  };
}

/** Write the fixture tree under `dir`. */
export function writeTree(dir: string): void {
  mkdirSync(path.join(dir, 'pkg', 'sub', 'deep'), { recursive: true });
  writeFileSync(path.join(dir, 'pkg', '__init__.py'), '');
  writeFileSync(path.join(dir, 'pkg', 'sub', '__init__.py'), '');
  writeFileSync(path.join(dir, 'pkg', 'mod.py'), 'X = 1\n'.repeat(1000));
  writeFileSync(path.join(dir, 'pkg', 'sub', 'copy.py'), 'X = 1\n'.repeat(1000));
  writeFileSync(path.join(dir, 'pkg', 'sub', 'deep', 'big.bin'), Buffer.alloc(100_000, 7));
  writeFileSync(path.join(dir, 'pkg', 'tool.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(path.join(dir, 'pkg', 'tool.sh'), 0o755);
  symlinkSync('mod.py', path.join(dir, 'pkg', 'alias.py'));
  symlinkSync('sub/deep', path.join(dir, 'pkg', 'deeplink'));
  symlinkSync('missing.py', path.join(dir, 'pkg', 'dangling.py'));
  mkdirSync(path.join(dir, 'many'));
  for (let i = 0; i < 150; i++) writeFileSync(path.join(dir, 'many', `file-with-a-longish-name-${String(i).padStart(4, '0')}.txt`), `${i}\n`);
}

/** Build the fixture image (loaded as `tag`, also written to `<work>/image.tar`). */
export function buildFixture(name: string): BuiltFixture {
  requireEnvironment();
  const work = mkdtempSync(path.join(os.tmpdir(), `vrift-${name}-`));
  chmodSync(work, 0o755);
  const tree = path.join(work, 'tree');
  mkdirSync(tree);
  writeTree(tree);
  const tag = `vrift-${name}/fixture:${process.pid}`;
  const archive = path.join(work, 'image.tar');
  const env = { ...process.env };
  delete env.SOURCE_DATE_EPOCH;
  const r = vrift(['build', '--base', BASE_IMAGE, '--add', `${tree}:/vrift/app`, '--tag', tag, '--load', '--output', archive, '--cache-dir', path.join(work, 'cache'), '--json', '--quiet'], { env });
  if (r.status !== 0) throw new Error(`vrift build failed (${r.status}): ${r.stderr}`);
  return { work, tree, tag, archive, summary: JSON.parse(r.stdout) };
}

/** `docker run` args that make the host's node and this checkout available in a container. */
export function nodeMounts(root: string): string[] {
  return ['-v', `${process.execPath}:/usr/local/bin/node:ro`, '-v', `${root}:/opt/vrift:ro`];
}

/** `docker build` with the classic builder (what this engine has), no network. @throws with its output on failure */
export function classicBuild(tag: string, ctx: string): void {
  const r = spawnSync('docker', ['build', '-q', '--network', 'none', '-t', tag, ctx], { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '0' } });
  if (r.status !== 0) throw new Error(`docker build ${ctx} failed: ${r.stderr}`);
}
