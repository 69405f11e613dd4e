import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { canonicalJson } from '../../src/image/json';
import { layerFromOpener } from '../../src/image/layer';
import { appendLayers, rfc3339, withLdPreload } from '../../src/image/mutate';
import { imageFromParts } from '../../src/image/partial';
import type { ImageConfig } from '../../src/image/types';
import { fixture, makeTar, sha } from './helpers';

const SHIM = '/usr/lib/vrift/libvrift.so';

describe('withLdPreload', () => {
  test('adds LD_PRELOAD when there is none, keeping the rest in order', () => {
    expect(withLdPreload(['PATH=/bin', 'A=1'], SHIM)).toEqual(['PATH=/bin', 'A=1', `LD_PRELOAD=${SHIM}`]);
    expect(withLdPreload([], SHIM)).toEqual([`LD_PRELOAD=${SHIM}`]);
  });
  test('keeps an existing LD_PRELOAD after ours, in place', () => {
    expect(withLdPreload(['A=1', 'LD_PRELOAD=/lib/a.so:/lib/b.so', 'B=2'], SHIM)).toEqual(['A=1', `LD_PRELOAD=${SHIM}:/lib/a.so:/lib/b.so`, 'B=2']);
    expect(withLdPreload(['LD_PRELOAD=/lib/a.so /lib/b.so'], SHIM)).toEqual([`LD_PRELOAD=${SHIM}:/lib/a.so:/lib/b.so`]);
  });
  test('does not duplicate ours; is idempotent', () => {
    const once = withLdPreload(['LD_PRELOAD=/lib/a.so:' + SHIM], SHIM);
    expect(once).toEqual([`LD_PRELOAD=${SHIM}:/lib/a.so`]);
    expect(withLdPreload(once, SHIM)).toEqual(once);
  });
  test('an empty LD_PRELOAD= becomes just ours; duplicate definitions fold into one (last wins, as in the engine)', () => {
    expect(withLdPreload(['LD_PRELOAD='], SHIM)).toEqual([`LD_PRELOAD=${SHIM}`]);
    expect(withLdPreload(['LD_PRELOAD=/x.so', 'A=1', 'LD_PRELOAD=/y.so'], SHIM)).toEqual([`LD_PRELOAD=${SHIM}:/y.so`, 'A=1']);
  });
  test('a variable whose name merely starts with LD_PRELOAD is left alone', () => {
    expect(withLdPreload(['LD_PRELOAD_X=1'], SHIM)).toEqual(['LD_PRELOAD_X=1', `LD_PRELOAD=${SHIM}`]);
  });
});

describe('canonicalJson', () => {
  test('sorts keys at every depth, keeps array order, no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null }, u: undefined })).toBe('{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson({ 'é': 'x', Z: 'ü' })).toBe(JSON.stringify({ Z: 'ü', 'é': 'x' }));
  });
});

describe('appendLayers', () => {
  async function setup() {
    const f = await fixture();
    const layers = f.layerTars.map((t, i) => layerFromOpener({ what: `l${i}`, open: async () => Readable.from([t]), compression: 'none', diffID: sha(t), size: t.length }));
    const base = imageFromParts(f.rawConfig, JSON.parse(f.rawConfig.toString()), layers);
    const addTar = await makeTar([{ name: 'vrift/', type: 'directory' }, { name: 'vrift/x', body: 'x' }]);
    const addGz = gzipSync(addTar);
    const add = layerFromOpener({ what: 'add', open: async () => Readable.from([addGz]) });
    return { f, base, add, addTar, addGz };
  }

  test('appends diff_ids and history, sets created, Env with LD_PRELOAD kept, labels; keeps other fields', async () => {
    const { f, base, add, addTar, addGz } = await setup();
    const created = rfc3339(1700000000);
    const img = appendLayers(base, [{ layer: add, history: { created_by: 'vrift build --add a:/vrift/a', comment: 'vrift tree' } }], {
      created,
      env: (e) => withLdPreload(e, SHIM),
      labels: { 'dev.vrift.version': '0.1.0', 'dev.vrift.blob.digest': sha('blob') },
    });
    const cfg = (await img.config()) as ImageConfig;
    expect(created).toBe('2023-11-14T22:13:20Z');
    expect(cfg.rootfs.diff_ids).toEqual([...(f.config.rootfs as { diff_ids: string[] }).diff_ids, sha(addTar)]);
    expect(cfg.history).toEqual([
      ...(f.config.history as object[]),
      { created, created_by: 'vrift build --add a:/vrift/a', comment: 'vrift tree' },
    ]);
    expect(cfg.created).toBe(created);
    expect(cfg.config?.Env).toEqual(['PATH=/usr/bin:/bin', `LD_PRELOAD=${SHIM}:/usr/lib/other.so`]);
    expect(cfg.config?.Labels).toEqual({ keep: 'me', 'dev.vrift.version': '0.1.0', 'dev.vrift.blob.digest': sha('blob') });
    expect(cfg.config?.Cmd).toEqual(['/bin/sh']);
    expect(cfg.architecture).toBe('amd64');
    // The raw config is canonical JSON of the parsed one, and the manifest points at it.
    const raw = await img.rawConfig();
    expect(raw.toString()).toBe(canonicalJson(cfg));
    const m = await img.manifest();
    expect(m.config).toEqual({ mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(raw), size: raw.length });
    expect(m.layers).toHaveLength(3);
    expect(m.layers[2]).toEqual({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(addGz), size: addGz.length });
    expect((await img.layers())[2]).toBe(add);
  });

  test('leaves the base untouched and is deterministic', async () => {
    const { f, base, add } = await setup();
    const mk = () => appendLayers(base, [{ layer: add, history: { created_by: 'x' } }], { created: rfc3339(0), env: (e) => withLdPreload(e, SHIM) });
    const a = await mk().rawConfig();
    const b = await mk().rawConfig();
    expect(a.equals(b)).toBe(true);
    expect((await base.rawConfig()).equals(f.rawConfig)).toBe(true);
    expect((await base.config()).rootfs.diff_ids).toHaveLength(2);
    expect(JSON.parse(a.toString()).created).toBe('1970-01-01T00:00:00Z');
  });

  test('a base with Env and Labels null (docker import) gets them created', async () => {
    const { add } = await setup();
    const t = await makeTar([{ name: 'a', body: 'a' }]);
    const cfg = { architecture: 'amd64', os: 'linux', config: { Env: null, Labels: null }, rootfs: { type: 'layers', diff_ids: [sha(t)] } };
    const raw = Buffer.from(JSON.stringify(cfg));
    const base = imageFromParts(raw, cfg as never, [layerFromOpener({ what: 't', open: async () => Readable.from([t]) })]);
    const img = appendLayers(base, [{ layer: add, history: { created_by: 'v' } }], { env: (e) => withLdPreload(e, SHIM), labels: { k: 'v' } });
    const out = await img.config();
    expect(out.config?.Env).toEqual([`LD_PRELOAD=${SHIM}`]);
    expect(out.config?.Labels).toEqual({ k: 'v' });
    expect(out.history).toEqual([{ created_by: 'v' }]);
  });
});
