/**
 * Where a build goes is checked before the tree is hashed (src/image/build.ts,
 * src/image/daemon.ts engineForLoad), against the real engine and a real
 * closed port:
 * - --load and an image path longer than the engine's overlay2 directory
 *   leaves room for (B7): one line naming the path, its length and the limit,
 *   found while planning; one byte shorter loads (the engine is the oracle);
 * - --load with no engine, --push to a registry that does not answer (M2):
 *   one line, before any file is hashed (the digest cache is never written).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { imageExists, sh, vrift } from './helpers';
import { fixture, legacyArchive } from '../image/helpers';

const TAG = 'vrift-test/engine-checks:1';
let work: string;
let base: string;

beforeAll(async () => {
  if (spawnSync('docker', ['version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('the Docker engine does not answer; start it: dockerd --iptables=false --ip6tables=false --bridge=none &');
  }
  sh('npx', ['tsc', '-p', path.join(__dirname, '..', '..', 'tsconfig.json')]);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-engine-checks-'));
  base = path.join(work, 'base.tar');
  await legacyArchive(await fixture(), base);
});

afterAll(() => {
  spawnSync('docker', ['rmi', '-f', TAG], { stdio: 'ignore' });
  fs.rmSync(work, { recursive: true, force: true });
});

/** A source whose one file lies 15 directories of 250 bytes deep: 3767 bytes below the source. */
function deepSource(): { src: string; below: number } {
  const src = path.join(work, 'deep');
  let d = src;
  for (let i = 0; i < 15; i++) d = path.join(d, String.fromCharCode(97 + i).repeat(250));
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, 'f'), 'deep\n');
  fs.utimesSync(path.join(d, 'f'), 500, 500); // not racy: hashing it writes the digest cache
  return { src, below: 15 * 251 + 2 };
}

test('--load: an image path longer than the engine\'s overlay2 directory allows is one line while planning; one byte shorter loads', () => {
  const [driver, rootDir] = sh('docker', ['info', '--format', '{{.Driver}} {{.DockerRootDir}}']).trim().split(' ');
  expect(driver).toBe('overlay2'); // what this machine's engine uses; the check is for overlay2
  const limit = 4095 - Buffer.byteLength(`${rootDir}/overlay2/${'0'.repeat(64)}/diff`);
  const { src, below } = deepSource();
  const destOf = (pathBytes: number) => `/vrift/${'c'.repeat(pathBytes - below - '/vrift/'.length)}`;

  const cache = path.join(work, 'cache-long');
  const long = destOf(limit + 1);
  const r = vrift(['build', '--base', `docker-archive:${base}`, '--add', `${src}:${long}`, '--tag', TAG, '--load', '--quiet', '--cache-dir', cache]);
  expect(r.stderr).toMatch(new RegExp(`^vrift: planning "${long}/a{250}/.*/o{250}/f" \\(from ".*"\\): the path is ${limit + 1} bytes; the engine \\(overlay2 in ${rootDir}\\) unpacks layers under ${rootDir}/overlay2/<64 hex>/diff, so with --load an image path holds at most ${limit} bytes; shorten it or choose a shorter destination\\n$`));
  expect(r.status).toBe(1);
  expect(fs.existsSync(cache)).toBe(false); // found while walking, before hashing
  expect(imageExists(TAG)).toBe(false);

  const ok = vrift(['build', '--base', `docker-archive:${base}`, '--add', `${src}:${destOf(limit)}`, '--tag', TAG, '--load', '--quiet', '--cache-dir', path.join(work, 'cache-ok')]);
  expect(ok.stderr).toBe('');
  expect(ok.status).toBe(0);
  expect(imageExists(TAG)).toBe(true);
});

test('--load with no engine and --push to a registry that does not answer: one line before the tree is hashed', () => {
  const src = path.join(work, 'small');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'f'), 'x');
  fs.utimesSync(path.join(src, 'f'), 500, 500); // not racy: hashing it writes the digest cache
  const cache = path.join(work, 'cache-m2');
  const noEngine = vrift(['build', '--base', `docker-archive:${base}`, '--add', `${src}:/vrift/s`, '--tag', TAG, '--load', '--quiet', '--cache-dir', cache], {
    env: { ...process.env, DOCKER_HOST: `unix://${work}/no-engine.sock` },
  });
  expect(noEngine.stderr).toBe('vrift: reaching the Docker engine for --load: cannot reach the Docker engine (ENOENT); start dockerd or set DOCKER_HOST\n');
  expect(noEngine.status).toBe(1);
  expect(fs.existsSync(cache)).toBe(false);

  // A loopback port nothing listens on (bound and closed again here).
  const port = Number(sh(process.execPath, ['-e', 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})']).trim());
  const noRegistry = vrift(['build', '--base', `docker-archive:${base}`, '--add', `${src}:/vrift/s`, '--tag', `127.0.0.1:${port}/x:1`, '--push', '--quiet', '--cache-dir', cache]);
  expect(noRegistry.stderr).toMatch(new RegExp(`^vrift: pinging registry 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*\\n$`));
  expect(noRegistry.status).toBe(1);
  expect(fs.existsSync(cache)).toBe(false);
});
