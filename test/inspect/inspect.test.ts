/**
 * `vrift inspect` against images the real CLI built, read through each
 * transport (docker-archive, docker-daemon, OCI layout written by skopeo).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { BASE_IMAGE, ROOT, sh, vrift } from '../e2e/helpers';
import { buildFixture, classicBuild, type BuiltFixture } from '../verify/fixture';

jest.setTimeout(300_000);

let fx: BuiltFixture;

beforeAll(() => {
  fx = buildFixture('inspect');
});

afterAll(async () => {
  if (fx) {
    spawnSync('docker', ['rmi', '-f', fx.tag], { stdio: 'ignore' });
    await fsp.rm(fx.work, { recursive: true, force: true });
  }
});

/** `tag`: the fixture image plus one layer made by `change(containerId)` (docker create + cp + commit: no process runs). */
function commitOnFixture(tag: string, change: (id: string) => void): void {
  const id = sh('docker', ['create', fx.tag, 'true']).trim();
  try {
    change(id);
    sh('docker', ['commit', id, tag]);
  } finally {
    spawnSync('docker', ['rm', '-f', id], { stdio: 'ignore' });
  }
}

interface Report {
  image: string;
  configDigest: string;
  manifestDigest: string;
  layers: { index: number; role: string; digest: string; diffID: string; size: number; vriftPaths: number; hasBlob: boolean }[];
  blob: { digest: string; label: string; labelMatches: boolean; roots: string[]; entries: number; files: number; dirs: number; symlinks: number; casObjects: number; flags: string[]; layer: number };
  dedup: { logicalBytes: number; casBytes: number; ratio: number };
  shim: { arch: string; libc: string; sha256: string; size: number; layer: number };
}

function inspect(ref: string): Report {
  const r = vrift(['inspect', ref, '--json']);
  if (r.status !== 0) throw new Error(`vrift inspect ${ref} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
}

test('docker-archive: layers, blob, label, counts, dedup and shim agree with the build and the files', () => {
  const r = inspect(`docker-archive:${fx.archive}`);
  const s = fx.summary;
  expect(r.configDigest).toBe(s.configDigest);
  expect(r.manifestDigest).toBe(s.manifestDigest);
  expect(r.layers.map((l) => l.digest)).toEqual(s.layers.map((l) => l.digest));
  expect(r.layers.map((l) => l.diffID)).toEqual(s.layers.map((l) => l.diffID));
  // Roles are read from the layers' contents: the build said base..., shim, vrift.
  expect(r.layers.map((l) => l.role)).toEqual(s.layers.map((l) => (l.role === 'vrift' ? 'tree' : l.role)));
  const tree = r.layers[r.layers.length - 1];
  expect(tree.hasBlob).toBe(true);
  expect(tree.vriftPaths).toBe(s.stats.files + s.stats.dirs + s.stats.symlinks + s.stats.casObjects);
  expect(r.blob.digest).toBe(s.blobDigest);
  expect(r.blob.label).toBe(s.blobDigest);
  expect(r.blob.labelMatches).toBe(true);
  expect(r.blob.roots).toEqual(['/vrift']);
  expect(r.blob.flags).toEqual(['PSFS_H_DEV_RUNTIME', 'PSFS_H_CHECK_ROOT_MTIME', 'PSFS_H_IDENTITY_TAG']);
  expect(r.blob.entries).toBe(tree.vriftPaths);
  expect({ files: r.blob.files, dirs: r.blob.dirs, symlinks: r.blob.symlinks, casObjects: r.blob.casObjects }).toEqual({
    files: s.stats.files, dirs: s.stats.dirs, symlinks: s.stats.symlinks, casObjects: s.stats.casObjects,
  });
  // Dedup: mod.py and sub/copy.py are identical; the two empty __init__.py too.
  expect(r.dedup.logicalBytes).toBe(s.stats.bytes);
  expect(r.dedup.casBytes).toBe(s.stats.bytes - 6000);
  expect(r.dedup.ratio).toBeCloseTo(s.stats.dedupRatio, 12);
  const so = readFileSync(path.join(ROOT, 'shim', 'build', 'libvrift.so'));
  expect(r.shim).toMatchObject({ arch: 'amd64', libc: 'glibc', size: so.length, sha256: `sha256:${createHash('sha256').update(so).digest('hex')}`, layer: r.layers.length - 2 });
});

test('docker-daemon and an OCI layout (skopeo copy) give the same report as the archive', () => {
  const a = inspect(`docker-archive:${fx.archive}`);
  const d = inspect(`docker-daemon:${fx.tag}`);
  // The engine exports its layers uncompressed: digests and sizes differ, diffIDs and config do not.
  expect(d.configDigest).toBe(a.configDigest);
  expect(d.blob).toEqual(a.blob);
  expect(d.shim).toEqual(a.shim);
  expect(d.dedup).toEqual(a.dedup);
  expect(d.layers.map((l) => [l.role, l.diffID, l.vriftPaths])).toEqual(a.layers.map((l) => [l.role, l.diffID, l.vriftPaths]));
  const layout = path.join(fx.work, 'oci');
  sh('skopeo', ['copy', `docker-archive:${fx.archive}`, `oci:${layout}:x`]);
  const o = inspect(`oci:${layout}:x`);
  expect(o.blob).toEqual(a.blob);
  expect(o.shim).toEqual(a.shim);
  expect(o.dedup).toEqual(a.dedup);
  expect(o.layers.map((l) => [l.role, l.diffID])).toEqual(a.layers.map((l) => [l.role, l.diffID]));
});

test('table output names the layers, domain, blob, label check, dedup and shim', () => {
  const r = vrift(['inspect', `docker-archive:${fx.archive}`]);
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/^domain +\/vrift$/m);
  expect(r.stdout).toContain(`blob       ${fx.summary.blobDigest}`);
  expect(r.stdout).toMatch(/^label .*\(matches the blob\)$/m);
  expect(r.stdout).toMatch(/^dedup +\d+\.\d{3}x/m);
  expect(r.stdout).toMatch(/^shim +\/usr\/lib\/vrift\/libvrift.so linux\/amd64 glibc/m);
  expect(r.stdout).toMatch(/^\d+ +shim /m);
  expect(r.stdout).toMatch(/^\d+ +tree .* \+blob$/m);
});

test('an image without vrift layers: one clear error line, exit 1', () => {
  const r = vrift(['inspect', `docker-daemon:${BASE_IMAGE}`]);
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/^vrift: inspecting docker-daemon:vrift-test\/bookworm-python:latest: the image has no vrift layers/);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stdout).toBe('');
});

test('an image whose visible blob is corrupt: the rest is reported, blob "corrupt (<reason>)", exit 1 with advice to rebuild the image', () => {
  // The fixture image plus one layer holding a psfs.blob with one body byte flipped (docker cp + commit: no process runs).
  const tag = `vrift-test/inspect-corrupt:${process.pid}`;
  commitOnFixture(tag, (id) => {
    const blob = path.join(fx.work, 'corrupt.blob');
    sh('docker', ['cp', `${id}:/usr/lib/vrift/psfs.blob`, blob]);
    const b = readFileSync(blob);
    b[b.length - 1] ^= 0xff;
    writeFileSync(blob, b);
    sh('docker', ['cp', blob, `${id}:/usr/lib/vrift/psfs.blob`]);
  });
  try {
    const good = inspect(`docker-archive:${fx.archive}`);
    const r = vrift(['inspect', `docker-daemon:${tag}`, '--json']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^vrift: inspecting docker-daemon:${tag.replace(/[.:/]/g, '\\$&')}: the PSFS blob in layer ${good.layers.length + 1} is corrupt \\(body checksum mismatch \\(body_crc32\\)\\); rebuild the image with \`vrift build\` \\(the build writes the blob\\)\\n$`));
    const rep = JSON.parse(r.stdout) as Omit<Report, 'blob'> & { blob: { problem: string; reason: string; layer: number; labelMatches: boolean; label: string } };
    expect(rep.blob).toMatchObject({ problem: 'corrupt', reason: 'body checksum mismatch (body_crc32)', layer: good.layers.length, label: good.blob.digest, labelMatches: false });
    expect(rep.layers.slice(0, good.layers.length).map((l) => l.diffID)).toEqual(good.layers.map((l) => l.diffID));
    expect(rep.shim).toEqual(good.shim);
    const table = vrift(['inspect', `docker-daemon:${tag}`]);
    expect(table.status).toBe(1);
    expect(table.stdout).toContain(`blob       corrupt (body checksum mismatch (body_crc32)): sha256:`);
    expect(table.stdout).toContain('(DOES NOT match the blob)');
    expect(table.stderr).not.toContain('vrift blob');
  } finally {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
  }
});

test('an image whose blob is valid but not the one its label names: the report, then exit 1 saying a later layer replaced it', () => {
  // The fixture image plus one layer whose psfs.blob is a valid blob of another tree (vrift blob of a host directory).
  const tag = `vrift-test/inspect-relabel:${process.pid}`;
  const other = path.join(fx.work, 'other');
  const blob = path.join(fx.work, 'other.blob');
  sh('mkdir', ['-p', `${other}/d`]);
  writeFileSync(`${other}/d/f`, 'x');
  expect(vrift(['blob', other, '-o', blob]).status).toBe(0);
  const digest = `sha256:${createHash('sha256').update(readFileSync(blob)).digest('hex')}`;
  commitOnFixture(tag, (id) => sh('docker', ['cp', blob, `${id}:/usr/lib/vrift/psfs.blob`]));
  try {
    const good = inspect(`docker-archive:${fx.archive}`);
    const r = vrift(['inspect', `docker-daemon:${tag}`, '--json']);
    expect(r.status).toBe(1);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.blob).toMatchObject({ digest, label: good.blob.digest, labelMatches: false, layer: good.layers.length });
    expect(r.stderr).toBe(`vrift: inspecting docker-daemon:${tag}: the dev.vrift.blob.digest label says ${good.blob.digest} but the PSFS blob in layer ${good.layers.length + 1} is ${digest}: a later layer replaced the blob, or the label was changed; rebuild the image with \`vrift build\` (or run \`vrift verify\` inside it to check the blob against the tree)\n`);
    const table = vrift(['inspect', `docker-daemon:${tag}`]);
    expect(table.status).toBe(1);
    expect(table.stdout).toContain('(DOES NOT match the blob)');
  } finally {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
  }
});

/** `docker build` of `FROM <from>` plus `lines` (classic builder, no network) into a context with `files`. */
function derive(tag: string, from: string, lines: string[], files: Record<string, Buffer | string> = {}): void {
  const ctx = path.join(fx.work, tag.replace(/[/:]/g, '_'));
  sh('mkdir', ['-p', ctx]);
  for (const [n, b] of Object.entries(files)) writeFileSync(path.join(ctx, n), b);
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${from}\n${lines.join('\n')}\n`);
  classicBuild(tag, ctx);
}

describe('whiteouts of a later layer (OCI image spec layer.md "Whiteouts")', () => {
  const RMBLOB = `vrift-test/inspect-rmblob:${process.pid}`;
  const RMDIR = `vrift-test/inspect-rmdir:${process.pid}`;
  const OPAQUE = `vrift-test/inspect-opaque:${process.pid}`;
  afterAll(() => {
    for (const t of [RMBLOB, RMDIR, OPAQUE]) spawnSync('docker', ['rmi', '-f', t], { stdio: 'ignore' });
  });

  test('RUN rm of the blob (usr/lib/vrift/.wh.psfs.blob): blob null, blobRemoved names both layers, exit 1 saying so; the shim is still reported', () => {
    derive(RMBLOB, fx.tag, ['RUN rm /usr/lib/vrift/psfs.blob']);
    const good = inspect(`docker-archive:${fx.archive}`);
    const n = good.layers.length;
    const r = vrift(['inspect', `docker-daemon:${RMBLOB}`, '--json']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`vrift: inspecting docker-daemon:${RMBLOB}: the PSFS blob /usr/lib/vrift/psfs.blob of layer ${n} was removed by layer ${n + 1} (usr/lib/vrift/.wh.psfs.blob): the image has no blob, so the shim answers nothing from memory (every stat passes through); rebuild the image with \`vrift build\` and keep later layers from deleting /usr/lib/vrift\n`);
    const rep = JSON.parse(r.stdout);
    expect(rep.blob).toBeNull();
    expect(rep.dedup).toBeNull();
    expect(rep.blobRemoved).toEqual({ layer: n - 1, by: n, entry: 'usr/lib/vrift/.wh.psfs.blob' });
    expect(rep.label).toBe(good.blob.digest);
    expect(rep.layers[n - 1]).toMatchObject({ hasBlob: true, hidesBlob: false });
    expect(rep.layers[n]).toMatchObject({ hasBlob: false, hidesBlob: true });
    expect(rep.shim).toEqual(good.shim);
    expect(rep.shimRemoved).toBeNull();
    const table = vrift(['inspect', `docker-daemon:${RMBLOB}`]);
    expect(table.status).toBe(1);
    expect(table.stdout).toContain(`blob       REMOVED: layer ${n} has /usr/lib/vrift/psfs.blob, layer ${n + 1} deletes it (usr/lib/vrift/.wh.psfs.blob)\n`);
    expect(table.stdout).toContain(`label      ${good.blob.digest} (the image has no blob)\n`);
    expect(table.stdout).toMatch(new RegExp(`^${n + 1} .* -blob$`, 'm'));
  });

  test('RUN rm -rf /usr/lib/vrift (a whiteout of the parent directory, usr/lib/.wh.vrift): blob and shim both removed, exit 1', () => {
    derive(RMDIR, fx.tag, ['RUN rm -rf /usr/lib/vrift']);
    const n = inspect(`docker-archive:${fx.archive}`).layers.length;
    const r = vrift(['inspect', `docker-daemon:${RMDIR}`, '--json']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`of layer ${n} was removed by layer ${n + 1} (usr/lib/.wh.vrift)`);
    const rep = JSON.parse(r.stdout);
    expect(rep.blob).toBeNull();
    expect(rep.blobRemoved).toEqual({ layer: n - 1, by: n, entry: 'usr/lib/.wh.vrift' });
    expect(rep.shim).toBeNull();
    expect(rep.shimRemoved).toEqual({ layer: n - 2, by: n, entry: 'usr/lib/.wh.vrift' });
    const table = vrift(['inspect', `docker-daemon:${RMDIR}`]);
    expect(table.stdout).toContain(`shim       REMOVED: layer ${n - 1} has /usr/lib/vrift/libvrift.so, layer ${n + 1} deletes it (usr/lib/.wh.vrift)\n`);
  });

  test('RUN rm -rf + mkdir /usr/lib/vrift (an opaque directory, usr/lib/vrift/.wh..wh..opq): blob and shim removed, exit 1', () => {
    derive(OPAQUE, fx.tag, ['RUN rm -rf /usr/lib/vrift && mkdir /usr/lib/vrift && echo x > /usr/lib/vrift/other']);
    const n = inspect(`docker-archive:${fx.archive}`).layers.length;
    const r = vrift(['inspect', `docker-daemon:${OPAQUE}`, '--json']);
    expect(r.status).toBe(1);
    const rep = JSON.parse(r.stdout);
    expect(rep.blob).toBeNull();
    expect(rep.blobRemoved).toEqual({ layer: n - 1, by: n, entry: 'usr/lib/vrift/.wh..wh..opq' });
    expect(rep.shim).toBeNull();
    expect(rep.shimRemoved).toEqual({ layer: n - 2, by: n, entry: 'usr/lib/vrift/.wh..wh..opq' });
  });
});

test('a dev.vrift.blob.digest label on an image with no vrift layers: exit 1, one line naming the label and saying there is no blob', () => {
  const tag = `vrift-test/inspect-stray:${process.pid}`;
  const label = `sha256:${'1'.repeat(64)}`;
  derive(tag, BASE_IMAGE, [`LABEL dev.vrift.blob.digest=${label}`]);
  try {
    const r = vrift(['inspect', `docker-daemon:${tag}`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`vrift: inspecting docker-daemon:${tag}: the dev.vrift.blob.digest label says ${label} but the image holds no PSFS blob (no layer has /usr/lib/vrift/psfs.blob); the label was copied or set by hand: remove it, or build the image with \`vrift build\`\n`);
    expect(r.stdout).toBe('');
  } finally {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
  }
});

test('a blob without a label (a Dockerfile COPY, as vrift-mkblob images have): exit 0, the label line says just "(none)"', () => {
  const tag = `vrift-test/inspect-nolabel:${process.pid}`;
  const dir = path.join(fx.work, 'nolabel-tree');
  sh('mkdir', ['-p', `${dir}/d`]);
  writeFileSync(`${dir}/d/f`, 'x');
  const blob = path.join(fx.work, 'nolabel.blob');
  expect(vrift(['blob', dir, '-o', blob]).status).toBe(0);
  derive(tag, BASE_IMAGE, ['COPY psfs.blob /usr/lib/vrift/psfs.blob'], { 'psfs.blob': readFileSync(blob) });
  try {
    const r = vrift(['inspect', `docker-daemon:${tag}`]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^label +\(none\)$/m);
    expect(r.stdout).not.toContain('DOES NOT match');
  } finally {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
  }
});

test('a missing image: exit 1 naming it', () => {
  const r = vrift(['inspect', `docker-archive:${fx.work}/nope.tar`]);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('nope.tar: no such file or directory');
});
