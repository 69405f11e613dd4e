import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parseAdds, parseChown, sourceDateEpochFromEnv } from '../../src/cli/commands/build';
import { quoteDest, treeCreatedBy } from '../../src/image/build';
import { destsFromHistory } from '../../src/verify/imageScan';
import { parseReference } from '../../src/image/reference';
import { parseSourceRef } from '../../src/image/source';
import { tmpDir } from './helpers';

describe('vrift build argument parsing', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tmpDir();
    await fsp.mkdir(path.join(dir, 'a'));
    await fsp.mkdir(path.join(dir, 'b:c'));
    await fsp.writeFile(path.join(dir, 'base.tar'), '');
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('SOURCE_DATE_EPOCH: strict, unset/empty mean unset, error names the variable', () => {
    expect(sourceDateEpochFromEnv(undefined)).toBeUndefined();
    expect(sourceDateEpochFromEnv('')).toBeUndefined();
    expect(sourceDateEpochFromEnv('0')).toBe(0);
    expect(sourceDateEpochFromEnv('1700000000')).toBe(1700000000);
    for (const bad of ['-1', '1.5', ' 1', '1e9', 'abc', '0x10', '999999999999999']) {
      expect(() => sourceDateEpochFromEnv(bad)).toThrow(/^reading SOURCE_DATE_EPOCH: /);
    }
  });

  test('--chown', () => {
    expect(parseChown(undefined)).toBeUndefined();
    expect(parseChown('1000:100')).toEqual({ uid: 1000, gid: 100 });
    expect(() => parseChown('root:root')).toThrow(/use numeric uid:gid/);
  });

  test('--add: host paths with colons, destination normalization and checks', async () => {
    expect(await parseAdds([`${dir}/a:/vrift/x/`, `${dir}/b:c:/vrift/y`])).toEqual([
      { src: `${dir}/a`, dest: '/vrift/x' },
      { src: `${dir}/b:c`, dest: '/vrift/y' },
    ]);
    await expect(parseAdds([`${dir}/a:/opt`])).rejects.toThrow(`adding ${dir}/a: destination /opt is outside /vrift`);
    await expect(parseAdds([`${dir}/a:/vrift`])).rejects.toThrow(/destination \/vrift is the domain root itself/);
    await expect(parseAdds([`${dir}/a:/vrift/.cas/x`])).rejects.toThrow(/reserves for content objects/);
    await expect(parseAdds([`${dir}/a:/vrift/x`, `${dir}/a:/vrift/x/y`])).rejects.toThrow(/overlaps \/vrift\/x/);
    await expect(parseAdds([`${dir}/a`])).rejects.toThrow(/use <host-dir>:\/vrift\/<path>/);
  });

  test('--base transports', async () => {
    expect(await parseSourceRef(`docker-archive:${dir}/base.tar`)).toMatchObject({ transport: 'docker-archive', path: `${dir}/base.tar`, ref: undefined });
    expect(await parseSourceRef(`docker-archive:${dir}/base.tar:app:1`)).toMatchObject({ transport: 'docker-archive', path: `${dir}/base.tar`, ref: 'app:1' });
    expect(await parseSourceRef(`oci:${dir}/a:v1`)).toMatchObject({ transport: 'oci', path: `${dir}/a`, ref: 'v1' });
    expect(await parseSourceRef('docker-daemon:debian:12')).toMatchObject({ transport: 'docker-daemon', ref: 'debian:12', bare: false });
    expect(await parseSourceRef('debian:12')).toMatchObject({ transport: 'docker-daemon', ref: 'debian:12', bare: true });
    // registry transport (H9): a plain reference whose first component is a host is a registry
    expect(await parseSourceRef('localhost:5000/x/y:1')).toMatchObject({ transport: 'docker', ref: { registry: 'localhost:5000', repository: 'x/y', tag: '1', scheme: 'http' } });
    expect(await parseSourceRef('docker-daemon:localhost:5000/x/y:1')).toMatchObject({ transport: 'docker-daemon', ref: 'localhost:5000/x/y:1' });
    expect(await parseSourceRef('docker://debian:12')).toMatchObject({ transport: 'docker', ref: { registry: 'docker.io', apiHost: 'registry-1.docker.io', repository: 'library/debian', tag: '12', scheme: 'https' } });
    await expect(parseSourceRef('Bad Ref')).rejects.toThrow(/not a valid reference/);
  });

  test('references', () => {
    expect(parseReference('app')).toMatchObject({ name: 'app', tag: 'latest', familiar: 'docker.io/library/app:latest' });
    expect(parseReference('org/app:1.2')).toMatchObject({ name: 'org/app', tag: '1.2', familiar: 'docker.io/org/app:1.2' });
    expect(parseReference('localhost:5000/app')).toMatchObject({ name: 'localhost:5000/app', tag: 'latest', fullName: 'localhost:5000/app' });
    expect(() => parseReference('App:1')).toThrow();
  });

  test('history created_by names destinations only, so the host checkout path does not change the config digest', () => {
    expect(treeCreatedBy([{ src: '/tmp/x/a', dest: '/vrift/python' }], { uid: 1, gid: 2 })).toBe('vrift build --add /vrift/python --chown 1:2');
  });

  test('created_by destinations with whitespace, quotes, backslashes or control characters are JSON-quoted and read back exactly; plain ones as before', () => {
    const dests = ['/vrift/python', '/vrift/a b', '/vrift/n\nl', '/vrift/t\tab', '/vrift/q"x', '/vrift/b\\s', '/vrift/x --add /vrift/y', '/vrift/\u2028', '/vrift/caf\u00e9'];
    const c = treeCreatedBy(dests.map((dest) => ({ src: '/src', dest })), { uid: 1, gid: 2 });
    expect(c).toBe('vrift build --add /vrift/python --add "/vrift/a b" --add "/vrift/n\\nl" --add "/vrift/t\\tab" --add "/vrift/q\\"x" --add "/vrift/b\\\\s" --add "/vrift/x --add /vrift/y" --add "/vrift/\u2028" --add /vrift/caf\u00e9 --chown 1:2');
    expect(c).not.toContain('\n');
    expect(destsFromHistory(['FROM x', c, undefined])).toEqual(dests);
    expect(quoteDest('/vrift/python')).toBe('/vrift/python');
    expect(quoteDest('/vrift/c\x01')).toBe('"/vrift/c\\u0001"');
    expect(quoteDest('/vrift/d\x7f')).toBe('"/vrift/d\x7f"');
    expect(destsFromHistory([treeCreatedBy([{ src: '/s', dest: '/vrift/c\x01' }, { src: '/s', dest: '/vrift/d\x7f' }])])).toEqual(['/vrift/c\x01', '/vrift/d\x7f']);
  });

  test('created_by of earlier versions (destinations unquoted) reads as it did: cut at the first whitespace', () => {
    expect(destsFromHistory(['vrift build --add /vrift/a b --add /vrift/c --chown 0:0', 'vrift build: shim /usr/lib/vrift/libvrift.so', 'RUN --add /x'])).toEqual(['/vrift/a', '/vrift/c']);
    expect(destsFromHistory(['vrift build --add /vrift/"q --add /vrift/d'])).toEqual(['/vrift/"q', '/vrift/d']);
  });
});
