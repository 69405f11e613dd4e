import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { VriftError } from '../../src/errors';
import { hashStream } from '../../src/image/digest';
import { readDockerArchiveFile } from '../../src/image/dockerArchive';
import { TarFileSource } from '../../src/image/files';
import { writeDockerArchive } from '../../src/image/dockerArchiveWrite';
import { layerFromOpener } from '../../src/image/layer';
import { readOciLayoutPath } from '../../src/image/ociLayout';
import { imageFromParts } from '../../src/image/partial';
import { MediaType, type Image } from '../../src/image/types';
import { fixture, legacyArchive, makeTar, sha, tmpDir, type Fixture } from './helpers';

async function readAll(img: Image) {
  const layers = await img.layers();
  const out = [];
  for (const l of layers) {
    out.push({
      digest: await l.digest(),
      diffID: await l.diffID(),
      size: await l.size(),
      mediaType: await l.mediaType(),
      stored: await hashStream(await l.open()),
      tar: await hashStream(await l.openUncompressed()),
    });
  }
  return out;
}

describe('docker-archive and OCI layout round trips', () => {
  let dir: string;
  let f: Fixture;
  beforeEach(async () => {
    dir = await tmpDir();
    f = await fixture();
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('legacy docker-archive: plain and gzip layers, digests and diffIDs', async () => {
    const file = path.join(dir, 'legacy.tar');
    await legacyArchive(f, file);
    const { image, repoTags } = await readDockerArchiveFile(file);
    expect(repoTags).toEqual(['fixture/base:1']);
    expect((await image.rawConfig()).equals(f.rawConfig)).toBe(true);
    const layers = await readAll(image);
    const gz = gzipSync(f.layerTars[1]);
    expect(layers[0]).toMatchObject({ digest: sha(f.layerTars[0]), diffID: sha(f.layerTars[0]), size: f.layerTars[0].length, mediaType: MediaType.ociLayer });
    expect(layers[1]).toMatchObject({ digest: sha(gz), diffID: sha(f.layerTars[1]), size: gz.length, mediaType: MediaType.ociLayerGzip });
    for (const l of layers) {
      expect(l.stored).toEqual({ digest: l.digest, size: l.size });
      expect(l.tar.digest).toBe(l.diffID);
    }
    const m = await image.manifest();
    expect(m.config.digest).toBe(sha(f.rawConfig));
    expect(m.layers.map((d) => d.digest)).toEqual([sha(f.layerTars[0]), sha(gz)]);
  });

  test('write then read back: the same config bytes and layer bytes, as docker-archive and as OCI layout (tar and dir)', async () => {
    const src = path.join(dir, 'legacy.tar');
    await legacyArchive(f, src);
    const { image } = await readDockerArchiveFile(src);
    const out = path.join(dir, 'out.tar');
    const w = await writeDockerArchive(image, out, { tags: ['example/app:2'] });
    expect(w.configDigest).toBe(sha(f.rawConfig));
    expect(w.size).toBe((await fsp.stat(out)).size);
    expect((await fsp.readdir(dir)).sort()).toEqual(['legacy.tar', 'out.tar']); // no temp file left

    const before = await readAll(image);
    const back = await readDockerArchiveFile(out, 'example/app:2');
    expect(back.repoTags).toEqual(['example/app:2']);
    expect((await back.image.rawConfig()).equals(f.rawConfig)).toBe(true);
    expect(await readAll(back.image)).toEqual(before);
    expect((await back.image.rawManifest()).equals(await image.rawManifest())).toBe(true);

    const asOciTar = await readOciLayoutPath(out);
    expect(await readAll(asOciTar)).toEqual(before);
    const unpacked = path.join(dir, 'layout');
    await fsp.mkdir(unpacked);
    execFileSync('tar', ['-xf', out, '-C', unpacked]);
    const asOciDir = await readOciLayoutPath(unpacked, { ref: '2' });
    expect(await readAll(asOciDir)).toEqual(before);
    expect(sha(await asOciDir.rawManifest())).toBe(w.manifestDigest);
  });

  test('writing is deterministic: same image, same bytes', async () => {
    const src = path.join(dir, 'legacy.tar');
    await legacyArchive(f, src);
    const { image } = await readDockerArchiveFile(src);
    await writeDockerArchive(image, path.join(dir, 'a.tar'), { tags: ['x:1'] });
    await writeDockerArchive(image, path.join(dir, 'b.tar'), { tags: ['x:1'] });
    const [a, b] = await Promise.all([fsp.readFile(path.join(dir, 'a.tar')), fsp.readFile(path.join(dir, 'b.tar'))]);
    expect(a.equals(b)).toBe(true);
  });

  test('Docker >= 25 layout: blobs/sha256 members and legacy layer.tar symlinks into blobs/', async () => {
    const [l1, l2] = f.layerTars;
    const cfgHex = sha(f.rawConfig).slice(7);
    const h1 = sha(l1).slice(7);
    const h2 = sha(l2).slice(7);
    const file = path.join(dir, 'd25.tar');
    await fsp.writeFile(file, await makeTar([
      { name: 'blobs/', type: 'directory' },
      { name: 'blobs/sha256/', type: 'directory' },
      { name: `blobs/sha256/${cfgHex}`, body: f.rawConfig },
      { name: `blobs/sha256/${h1}`, body: l1 },
      { name: `blobs/sha256/${h2}`, body: l2 },
      { name: `${h2}/`, type: 'directory' },
      { name: `${h2}/layer.tar`, type: 'symlink', linkname: `../blobs/sha256/${h2}` },
      { name: 'manifest.json', body: JSON.stringify([{ Config: `blobs/sha256/${cfgHex}`, RepoTags: ['d25:latest'], Layers: [`blobs/sha256/${h1}`, `${h2}/layer.tar`] }]) },
    ]));
    const { image } = await readDockerArchiveFile(file, 'd25');
    const layers = await readAll(image);
    expect(layers.map((l) => [l.digest, l.diffID, l.size])).toEqual([[sha(l1), sha(l1), l1.length], [sha(l2), sha(l2), l2.length]]);
    expect(layers.map((l) => l.stored.digest)).toEqual([sha(l1), sha(l2)]);
  });

  test('tar index: empty members read as empty, symlink chains resolve, escaping names are refused', async () => {
    const file = path.join(dir, 'members.tar');
    await fsp.writeFile(file, await makeTar([
      { name: 'empty', body: '' },
      { name: 'a/data', body: 'payload' },
      { name: 'b/link1', type: 'symlink', linkname: '../a/data' },
      { name: 'c/link2', type: 'symlink', linkname: '../b/link1' },
      { name: 'loop', type: 'symlink', linkname: 'loop' },
    ]));
    const files = await TarFileSource.index(file, 'test');
    expect((await files.readFile('empty')).length).toBe(0);
    expect((await hashStream(await files.open('empty'))).size).toBe(0);
    expect((await files.readFile('./c/link2')).toString()).toBe('payload');
    expect((await hashStream(await files.open('b/link1'))).size).toBe(7);
    expect(await files.has('loop')).toBe(false);
    expect(await files.has('../a/data')).toBe(false);
    await expect(files.readFile('missing')).rejects.toThrow(/member "missing" is missing; the archive is incomplete/);
  });

  test('a layer whose bytes do not match its digest fails the write and leaves no file', async () => {
    const good = f.layerTars[0];
    const bad = Buffer.from(good);
    bad[600] ^= 1;
    const layer = layerFromOpener({
      what: 'test layer',
      open: async () => (await import('node:stream')).Readable.from([bad]),
      digest: sha(good), diffID: sha(good), size: good.length, compression: 'none',
    });
    const cfg = { ...f.config, rootfs: { type: 'layers', diff_ids: [sha(good)] } };
    const raw = Buffer.from(JSON.stringify(cfg));
    const img = imageFromParts(raw, cfg as never, [layer]);
    const out = path.join(dir, 'corrupt.tar');
    await expect(writeDockerArchive(img, out)).rejects.toThrow(VriftError);
    await expect(writeDockerArchive(img, out)).rejects.toThrow(/copying layer 1 .* was expected/);
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  test('not an archive, missing manifest.json, several images without a ref: clear errors', async () => {
    const junk = path.join(dir, 'junk.tar');
    await fsp.writeFile(junk, 'not a tar at all'.repeat(100));
    await expect(readDockerArchiveFile(junk)).rejects.toThrow(/^reading docker-archive:.*junk.tar: not a readable tar archive/);
    const nomani = path.join(dir, 'nomani.tar');
    await fsp.writeFile(nomani, await makeTar([{ name: 'x', body: 'y' }]));
    await expect(readDockerArchiveFile(nomani)).rejects.toThrow(/manifest.json is missing; this is not a docker-archive/);
    const two = path.join(dir, 'two.tar');
    const cfgHex = sha(f.rawConfig).slice(7);
    await fsp.writeFile(two, await makeTar([
      { name: 'l.tar', body: f.layerTars[0] },
      { name: 'l2.tar', body: f.layerTars[1] },
      { name: `${cfgHex}.json`, body: f.rawConfig },
      { name: 'manifest.json', body: JSON.stringify([
        { Config: `${cfgHex}.json`, RepoTags: ['a:1'], Layers: ['l.tar', 'l2.tar'] },
        { Config: `${cfgHex}.json`, RepoTags: ['b:1'], Layers: ['l.tar', 'l2.tar'] },
      ]) },
    ]));
    await expect(readDockerArchiveFile(two)).rejects.toThrow(/holds 2 images; say which with docker-archive:<file>:<name:tag>/);
    expect((await readDockerArchiveFile(two, 'b:1')).repoTags).toEqual(['b:1']);
    await expect(readDockerArchiveFile(two, 'c:1')).rejects.toThrow(/no image tagged c:1; the archive holds a:1, b:1/);
  });
});
