import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

export const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

type Member = { name: string; body?: Buffer | string; type?: 'file' | 'directory' | 'symlink'; linkname?: string };

/** A tar built with tar-stream from in-memory members (fixed metadata). */
export async function makeTar(members: Member[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => { chunks.push(c as Buffer); });
  const ended = new Promise<void>((res, rej) => { pack.on('end', () => res()); pack.on('error', rej); });
  for (const m of members) {
    const body = m.body === undefined ? Buffer.alloc(0) : Buffer.from(m.body);
    await new Promise<void>((res, rej) =>
      pack.entry({ name: m.name, type: m.type ?? 'file', linkname: m.linkname, size: m.type && m.type !== 'file' ? 0 : body.length, mode: m.type === 'directory' ? 0o755 : 0o644, mtime: new Date(0), uid: 0, gid: 0 }, m.type && m.type !== 'file' ? Buffer.alloc(0) : body, (e) => (e ? rej(e) : res())),
    );
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

export async function tmpDir(): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-image-test-'));
}

export interface Fixture {
  config: Record<string, unknown>;
  rawConfig: Buffer;
  layerTars: Buffer[];
}

/** Two layers: one stored plain, one stored gzip in archives that support it. */
export async function fixture(): Promise<Fixture> {
  const l1 = await makeTar([{ name: 'etc/', type: 'directory' }, { name: 'etc/hello', body: 'hello\n' }]);
  const l2 = await makeTar([{ name: 'usr/', type: 'directory' }, { name: 'usr/data.bin', body: Buffer.alloc(70000, 7) }]);
  const config = {
    architecture: 'amd64',
    os: 'linux',
    created: '2020-01-01T00:00:00Z',
    config: { Env: ['PATH=/usr/bin:/bin', 'LD_PRELOAD=/usr/lib/other.so'], Cmd: ['/bin/sh'], Labels: { keep: 'me' } },
    rootfs: { type: 'layers', diff_ids: [sha(l1), sha(l2)] },
    history: [{ created: '2020-01-01T00:00:00Z', created_by: 'base 1' }, { created: '2020-01-01T00:00:00Z', created_by: 'base 2' }],
  };
  return { config, rawConfig: Buffer.from(JSON.stringify(config)), layerTars: [l1, l2] };
}

/** A legacy (Docker < 25) docker-archive: <id>/layer.tar, <hex>.json; layer 2 gzip-compressed as `<id>.tar.gz`. */
export async function legacyArchive(f: Fixture, file: string): Promise<void> {
  const cfgHex = sha(f.rawConfig).slice(7);
  const gz = gzipSync(f.layerTars[1]);
  const buf = await makeTar([
    { name: 'aaaa/', type: 'directory' },
    { name: 'aaaa/VERSION', body: '1.0' },
    { name: 'aaaa/layer.tar', body: f.layerTars[0] },
    { name: 'bbbb.tar.gz', body: gz },
    { name: `${cfgHex}.json`, body: f.rawConfig },
    { name: 'manifest.json', body: JSON.stringify([{ Config: `${cfgHex}.json`, RepoTags: ['fixture/base:1'], Layers: ['aaaa/layer.tar', 'bbbb.tar.gz'] }]) },
    { name: 'repositories', body: '{}' },
  ]);
  await fsp.writeFile(file, buf);
}
