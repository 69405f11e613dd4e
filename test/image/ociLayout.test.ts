import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { readOciLayoutPath } from '../../src/image/ociLayout';
import { MediaType } from '../../src/image/types';
import { makeTar, sha, tmpDir } from './helpers';

/** Write `data` as a blob of an OCI layout at `dir`; returns its descriptor fields. */
async function blob(dir: string, data: Buffer | string, mediaType: string, extra: Record<string, unknown> = {}) {
  const b = Buffer.from(data);
  await fsp.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'blobs', 'sha256', sha(b).slice(7)), b);
  return { mediaType, digest: sha(b), size: b.length, ...extra };
}

async function image(dir: string, arch: string) {
  const tarBytes = await makeTar([{ name: `${arch}.txt`, body: arch }]);
  const gz = gzipSync(tarBytes);
  const layer = await blob(dir, gz, MediaType.ociLayerGzip);
  const config = await blob(dir, JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(tarBytes)] } }), MediaType.ociConfig);
  const manifest = await blob(dir, JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] }), MediaType.ociManifest);
  return { manifest, tarBytes, gz };
}

describe('OCI image layout reader', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tmpDir();
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  async function multiPlatform() {
    const amd = await image(dir, 'amd64');
    const arm = await image(dir, 'arm64');
    const attestation = { ...amd.manifest, platform: { os: 'unknown', architecture: 'unknown' } };
    const index = await blob(dir, JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [
        { ...arm.manifest, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { ...amd.manifest, platform: { os: 'linux', architecture: 'amd64' } },
        attestation,
      ],
    }), MediaType.ociIndex);
    await fsp.writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...index, annotations: { 'org.opencontainers.image.ref.name': 'multi' } }] }));
    return { amd, arm };
  }

  test('nested image index: linux/amd64 by default, another platform on request, attestations skipped', async () => {
    const { amd, arm } = await multiPlatform();
    const a = await readOciLayoutPath(dir);
    expect((await a.config()).architecture).toBe('amd64');
    expect(sha(await a.rawManifest())).toBe(amd.manifest.digest);
    const [layer] = await a.layers();
    expect(await layer.digest()).toBe(sha(amd.gz));
    expect(await layer.diffID()).toBe(sha(amd.tarBytes));
    const b = await readOciLayoutPath(dir, { platform: 'linux/arm64', ref: 'multi' });
    expect(sha(await b.rawManifest())).toBe(arm.manifest.digest);
    await expect(readOciLayoutPath(dir, { platform: 'linux/s390x' })).rejects.toThrow(/no manifest for platform linux\/s390x; the layout has linux\/arm64\/v8, linux\/amd64/);
    await expect(readOciLayoutPath(dir, { ref: 'other' })).rejects.toThrow(/no manifest named "other"; the layout has multi/);
  });

  test('a single manifest is taken whatever its platform; a corrupt blob is refused', async () => {
    const arm = await image(dir, 'arm64');
    await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [arm.manifest] }));
    expect((await (await readOciLayoutPath(dir)).config()).architecture).toBe('arm64');
    const p = path.join(dir, 'blobs', 'sha256', arm.manifest.digest.slice(7));
    await fsp.writeFile(p, (await fsp.readFile(p, 'utf8')).replace('"schemaVersion":2', '"schemaVersion":2 '));
    await expect(readOciLayoutPath(dir)).rejects.toThrow(/does not match its digest; the layout is corrupt/);
  });

  test('missing layout: the error names the path', async () => {
    await expect(readOciLayoutPath(path.join(dir, 'nope'))).rejects.toThrow(/^reading OCI layout .*nope: no such file or directory; check the path after oci:/);
    await expect(readOciLayoutPath(dir)).rejects.toThrow(/index.json is missing; this is not an OCI image layout/);
  });
});
