/**
 * The FS_MODEL rules against the real thing: the layer is extracted by the
 * Docker engine (overlay2) and lstat'ed inside a container. Needs a running
 * engine and the local base image (VRIFT_TEST_BASE, default
 * vrift-test/bookworm-python, built by .ci/run); skipped, visibly, otherwise.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildVriftLayer } from '../../src/tree';
import { decodeBlob, makeFixture } from './helpers';

const BASE = process.env.VRIFT_TEST_BASE ?? 'vrift-test/bookworm-python';
const haveEngine = spawnSync('docker', ['image', 'inspect', BASE], { stdio: 'ignore' }).status === 0;

const LSTAT_PY = `
import os, sys, json
out = []
for dp, dns, fns in os.walk(b'/vrift'):
    for p in [dp] + [os.path.join(dp, n) for n in fns] + [os.path.join(dp, n) for n in dns if os.path.islink(os.path.join(dp, n))]:
        st = os.lstat(p)
        out.append({'path': p.hex(), 'mode': st.st_mode, 'uid': st.st_uid, 'gid': st.st_gid, 'nlink': st.st_nlink,
                    'size': st.st_size, 'blocks': st.st_blocks, 'blksize': st.st_blksize, 'mtime_ns': st.st_mtime_ns,
                    'target': os.readlink(p).hex() if os.path.islink(p) else None})
json.dump(out, sys.stdout)
`;

(haveEngine ? describe : describe.skip)(`overlay2 in a container (docker engine, base ${BASE})`, () => {
  let dir: string;
  const tag = `vrift-h4-overlay-test:${process.pid}`;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-overlay-'));
  });
  afterAll(async () => {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('lstat inside the container equals the blob for every /vrift path (identity fields and flagged estimates aside)', async () => {
    await makeFixture(path.join(dir, 'src'));
    const r = await buildVriftLayer({ adds: [{ src: path.join(dir, 'src'), dest: '/vrift/python' }], cacheDir: false, tmpDir: path.join(dir, 'out') });
    const ctx = path.join(dir, 'ctx');
    await fsp.mkdir(ctx);
    await fsp.copyFile(r.layer.path, path.join(ctx, 'layer.tar.gz'));
    await fsp.writeFile(path.join(ctx, 'lstat.py'), LSTAT_PY);
    // ADD of a local tar.gz: the engine extracts it with the same code that applies image layers.
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${BASE}\nADD layer.tar.gz /\nCOPY lstat.py /lstat.py\n`);
    execFileSync('docker', ['build', '-q', '-t', tag, ctx], { env: { ...process.env, DOCKER_BUILDKIT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const got = JSON.parse(execFileSync('docker', ['run', '--rm', '--network', 'none', tag, 'python3', '/lstat.py'], { maxBuffer: 1 << 26 }).toString()) as
      { path: string; mode: number; uid: number; gid: number; nlink: number; size: number; blocks: number; blksize: number; mtime_ns: number; target: string | null }[];
    const blob = decodeBlob(r.blob);
    const uncertain = new Set(r.uncertain.map((p) => p.toString('hex')));
    const inContainer = new Map(got.map((g) => [g.path, g]));
    expect(got.length).toBe(blob.entries.length);
    const mismatches: string[] = [];
    for (const e of blob.entries) {
      const k = e.path.toString('hex');
      const g = inContainer.get(k);
      if (!g) {
        mismatches.push(`${e.path.toString('latin1')}: missing in the container`);
        continue;
      }
      const want: { [f: string]: unknown } = { mode: e.mode, uid: e.uid, gid: e.gid, nlink: e.nlink, blksize: e.blksize, mtime_ns: Number(e.mtime[0]) * 1e9 + e.mtime[1], target: e.target ? e.target.toString('hex') : null };
      const have: { [f: string]: unknown } = { mode: g.mode, uid: g.uid, gid: g.gid, nlink: g.nlink, blksize: g.blksize, mtime_ns: g.mtime_ns, target: g.target };
      if (!uncertain.has(k)) {
        Object.assign(want, { size: Number(e.size), blocks: Number(e.blocks) });
        Object.assign(have, { size: g.size, blocks: g.blocks });
      }
      for (const f of Object.keys(want)) if (want[f] !== have[f]) mismatches.push(`${e.path.toString('latin1')} ${f}: blob ${want[f]} container ${have[f]}`);
    }
    expect(mismatches).toEqual([]);
  });
});
