/**
 * The vrift tool image built from the top-level Dockerfile (classic builder,
 * local bookworm + Debian nodejs 18 base): the CLI runs as the entrypoint on
 * Node 18, `vrift shim-path [--variant]` finds the shims it ships, every
 * variant built is an ELF shared object of its architecture/libc, the static
 * vrift-mkblob runs, the image sets no LD_PRELOAD, and `vrift inspect` (from
 * this checkout, against the engine) sees the shim layer and no blob.
 */
import * as path from 'node:path';
import { CLI, NODE_BASE, ROOT, TOOL_IMAGE, ensureToolImage, sh } from './helpers';

jest.setTimeout(1_500_000); // beforeAll may build the tool image cold (~9 min)

const inTool = (entry: string, ...args: string[]) => sh('docker', ['run', '--rm', '--network', 'none', '--entrypoint', entry, TOOL_IMAGE, ...args]);

describe('vrift tool image (top-level Dockerfile)', () => {
  beforeAll(() => ensureToolImage());

  test('ENTRYPOINT vrift on the base node; version and shim paths', () => {
    const version = (JSON.parse(sh('cat', [path.join(ROOT, 'package.json')])) as { version: string }).version;
    expect(sh('docker', ['run', '--rm', '--network', 'none', TOOL_IMAGE, '--version']).trim()).toBe(version);
    expect(inTool('node', '--version').trim()).toBe(sh('docker', ['run', '--rm', '--network', 'none', NODE_BASE, 'node', '--version']).trim());
    expect(sh('docker', ['run', '--rm', '--network', 'none', TOOL_IMAGE, 'shim-path']).trim()).toBe('/opt/vrift/shim/build/libvrift.so');
    expect(sh('docker', ['run', '--rm', '--network', 'none', TOOL_IMAGE, 'shim-path', '--variant', 'amd64-musl']).trim()).toBe('/opt/vrift/shim/build/amd64-musl/libvrift.so');
    const env = JSON.parse(sh('docker', ['image', 'inspect', '-f', '{{json .Config.Env}}', TOOL_IMAGE])) as string[];
    expect(env.filter((e) => e.startsWith('LD_PRELOAD'))).toEqual([]);
  });

  test('ships the shim variants and the static vrift-mkblob at /usr/lib/vrift, same bytes as /opt/vrift/shim/build', () => {
    const list = inTool('sh', '-c', 'cd /usr/lib/vrift && for f in $(find . -type f | sort); do printf "%s %s\\n" "$f" "$(sha256sum < "$f" | cut -c1-64)"; cmp "$f" "/opt/vrift/shim/build/$f" || exit 1; done');
    const files = list.trim().split('\n').map((l) => l.split(' ')[0]);
    expect(files).toEqual(expect.arrayContaining(['./libvrift.so', './amd64-glibc/libvrift.so', './amd64-musl/libvrift.so', './arm64-glibc/libvrift.so', './arm64-musl/libvrift.so', './vrift-mkblob']));
    // ELF class/machine: x86-64 (62) for amd64, AArch64 (183) for arm64; musl variant needs libc.so, glibc ones libc.so.6.
    const elf = inTool('node', '-e', `
      const fs = require('fs');
      for (const v of ['amd64-glibc', 'amd64-musl', 'arm64-glibc', 'arm64-musl']) {
        const b = fs.readFileSync('/usr/lib/vrift/' + v + '/libvrift.so');
        console.log(v, b.readUInt16LE(16), b.readUInt16LE(18), /libc\\.so\\.6/.test(b.toString('latin1')) ? 'glibc' : 'musl');
      }`);
    expect(elf.trim().split('\n')).toEqual(['amd64-glibc 3 62 glibc', 'amd64-musl 3 62 musl', 'arm64-glibc 3 183 glibc', 'arm64-musl 3 183 musl']);
    expect(inTool('sh', '-c', '/usr/lib/vrift/vrift-mkblob --help 2>&1')).toMatch(/^usage: vrift-mkblob /);
  });

  test('vrift inspect: a shim layer, no blob', () => {
    const r = JSON.parse(sh(process.execPath, [CLI, 'inspect', `docker-daemon:${TOOL_IMAGE}`, '--json'])) as {
      layers: { role: string }[]; blob?: unknown; shim: { path: string; arch: string; libc: string };
    };
    expect(r.layers.filter((l) => l.role === 'shim').length).toBe(1);
    expect(r.shim).toMatchObject({ path: '/usr/lib/vrift/libvrift.so', arch: 'amd64', libc: 'glibc' });
    expect(r.blob ?? null).toBeNull();
  });
});
