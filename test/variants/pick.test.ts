/**
 * `vrift build` picks the shim variant from the base image (issue 7):
 * the config's architecture, and musl when a base layer holds
 * /lib/ld-musl-*; it logs the pick, and the image's shim layer carries that
 * variant's bytes. Bases: vrift-test/musl (scripts/variants-setup.sh) and
 * vrift-test/bullseye (scripts/setup-machine.sh), read from the engine.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BUILD, buildShim, REPO } from '../shim/helpers';

let tmp: string;

beforeAll(() => {
  buildShim();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-pick-'));
  fs.mkdirSync(path.join(tmp, 'tree'));
  fs.writeFileSync(path.join(tmp, 'tree', 'a.txt'), 'a\n');
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function build(base: string): { log: string; shim: { path: string; variant: string } } {
  const out = path.join(tmp, `${base.replace(/[^a-z]/g, '_')}.tar`);
  const r = spawnSync('node', [path.join(REPO, 'bin/vrift.js'), 'build', '--base', base, '--tag', 'vrift-pick:test', '--output', out, '--add', `${path.join(tmp, 'tree')}:/vrift/t`, '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`vrift build --base ${base}: exit ${r.status}: ${r.stderr}`);
  fs.rmSync(out, { force: true });
  return { log: r.stderr, shim: JSON.parse(r.stdout).shim };
}

test.each([
  ['vrift-test/musl:latest', 'amd64-musl', /shim: picked amd64-musl for base linux\/amd64 \(\/lib\/ld-musl-x86_64\.so\.1 in layer 0\)/],
  ['vrift-test/bullseye:latest', 'amd64-glibc', /shim: picked amd64-glibc for base linux\/amd64 \(no \/lib\/ld-musl-\* in 1 layer\(s\)\)/],
])('base %s -> %s, logged, and that variant is the one in the image', (base, variant, logLine) => {
  const r = build(base);
  expect(r.log).toMatch(logLine);
  expect(r.shim.path).toBe(path.join(BUILD, variant, 'libvrift.so'));
  expect(r.shim.variant).toContain(variant.endsWith('musl') ? 'musl' : 'glibc');
}, 120_000);
