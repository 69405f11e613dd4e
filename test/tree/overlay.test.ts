/**
 * The FS_MODEL rules against the real thing: the layer is appended to the
 * base image (src/image), the image is `docker load`ed, so the engine applies
 * the layer exactly as it applies image layers (overlay2), and every /vrift
 * path is lstat'ed inside a container. Needs a running engine and the local
 * base image (VRIFT_TEST_BASE, default vrift-test/bookworm-python, built by
 * .ci/run); skipped, visibly, otherwise.
 *
 * Not `ADD layer.tar.gz` in a Dockerfile: the legacy builder re-tars the
 * container diff on commit and truncates mtimes to seconds (moby
 * FileInfoHeader), which is not what image layers go through.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildVriftLayer } from '../../src/tree';
import { dockerClient, readDaemonImage } from '../../src/image/daemon';
import { appendLayers } from '../../src/image/mutate';
import { layerFromFile } from '../../src/image/layer';
import { writeDockerArchive } from '../../src/image/dockerArchiveWrite';
import { decodeBlob, makeFixture } from './helpers';

const BASE = process.env.VRIFT_TEST_BASE ?? 'vrift-test/bookworm-python';
const haveEngine = spawnSync('docker', ['image', 'inspect', BASE], { stdio: 'ignore' }).status === 0;

/** JSON.parse with integers kept exact as strings where a double would round them (st_mtime_ns). */
function parseExact(text: string): unknown {
  return JSON.parse(text.replace(/("mtime_ns": )(\d+)/g, '$1"$2"'));
}

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
    const base = await readDaemonImage(dockerClient(), BASE, dir);
    try {
      const image = appendLayers(base.image, [{ layer: layerFromFile(r.layer), history: { created_by: 'vrift overlay test' } }]);
      await writeDockerArchive(image, path.join(dir, 'image.tar'), { tags: [tag] });
    } finally {
      await base.dispose();
    }
    execFileSync('docker', ['load', '-q', '-i', path.join(dir, 'image.tar')], { stdio: ['ignore', 'pipe', 'pipe'] });
    await fsp.mkdir(path.join(dir, 'scripts'));
    await fsp.writeFile(path.join(dir, 'scripts', 'lstat.py'), LSTAT_PY);
    await fsp.chmod(dir, 0o755);
    const got = parseExact(execFileSync('docker', ['run', '--rm', '--network', 'none', '-v', `${path.join(dir, 'scripts')}:/scripts:ro`, tag, 'python3', '/scripts/lstat.py'], { maxBuffer: 1 << 26 }).toString()) as
      { path: string; mode: number; uid: number; gid: number; nlink: number; size: number; blocks: number; blksize: number; mtime_ns: string; target: string | null }[];
    const blob = decodeBlob(readFileSync(r.blobFile));
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
      const want: { [f: string]: unknown } = { mode: e.mode, uid: e.uid, gid: e.gid, nlink: e.nlink, blksize: e.blksize, mtime_ns: String(e.mtime[0] * 1_000_000_000n + BigInt(e.mtime[1])), target: e.target ? e.target.toString('hex') : null };
      const have: { [f: string]: unknown } = { mode: g.mode, uid: g.uid, gid: g.gid, nlink: g.nlink, blksize: g.blksize, mtime_ns: String(g.mtime_ns), target: g.target };
      if (!uncertain.has(k)) {
        Object.assign(want, { size: Number(e.size), blocks: Number(e.blocks) });
        Object.assign(have, { size: g.size, blocks: g.blocks });
      }
      for (const f of Object.keys(want)) if (want[f] !== have[f]) mismatches.push(`${e.path.toString('latin1')} ${f}: blob ${want[f]} container ${have[f]}`);
    }
    expect(mismatches).toEqual([]);
  });
});
