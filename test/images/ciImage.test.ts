/**
 * images/python-ci: the CI runner image built for real (classic builder, FROM
 * the tool image and the local bookworm + python3 base; its deps stage
 * downloads Debian's python3-pytest and dependencies with apt over the host
 * network, cached by the engine after the first build) and a real command run
 * in it: `python3 -m pytest` on a small test project, with pytest, pluggy,
 * packaging, iniconfig, pygments ... imported from /vrift/python.
 *
 * Checked: pytest comes from /vrift; the run passes and prints the same with
 * and without the shim; strace counts of stat-family syscalls on /vrift paths
 * with and without it; `vrift verify` of a running container's root.
 *
 * images/node-ci likewise: a real node tool (the vrift CLI) run with its
 * production node_modules resolved from /vrift/node/node_modules.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI, NODE_BASE, PYTHON_BASE, ROOT, TOOL_IMAGE, dockerBuild, ensureToolImage, removeContainer, run, sh, startContainer, straceCount } from './helpers';

jest.setTimeout(1_500_000); // beforeAll may build the tool image cold (~9 min)

const TAG = `vrift-test/python-ci:${process.pid}`;
const NODE_TAG = `vrift-test/node-ci:${process.pid}`;

const TESTS = `
import packaging.version, pluggy, iniconfig, pygments
import pytest

@pytest.mark.parametrize('a,b', [('1.0', '1.0.0'), ('2.1', '2.1.0'), ('1!0', '1!0.0')])
def test_versions_equal(a, b):
    assert packaging.version.Version(a) == packaging.version.Version(b)

def test_pluggy_hook():
    spec = pluggy.HookspecMarker('demo')
    impl = pluggy.HookimplMarker('demo')
    class Spec:
        @spec
        def answer(self): ...
    class Plugin:
        @impl
        def answer(self): return 42
    pm = pluggy.PluginManager('demo')
    pm.add_hookspecs(Spec)
    pm.register(Plugin())
    assert pm.hook.answer() == [42]

def test_deps_live_under_vrift():
    for m in (pytest, pluggy, packaging, iniconfig, pygments):
        assert m.__file__.startswith('/vrift/python/'), m.__file__

def test_tmp_path(tmp_path):
    (tmp_path / 'x').write_text('y')
    assert (tmp_path / 'x').read_text() == 'y'
`;

describe('images/python-ci', () => {
  let proj: string;
  /** docker run options mounting the test project read-only at /proj. */
  let mount: string[] = [];

  beforeAll(() => {
    ensureToolImage();
    dockerBuild(path.join(ROOT, 'images', 'python-ci'), TAG, { BASE: PYTHON_BASE, VRIFT_IMAGE: TOOL_IMAGE });
    proj = mkdtempSync(path.join(os.tmpdir(), 'vrift-pyci-'));
    chmodSync(proj, 0o755);
    mkdirSync(path.join(proj, 'tests'));
    writeFileSync(path.join(proj, 'tests', 'test_sample.py'), TESTS);
    mount = ['-v', `${proj}:/proj:ro`, '-w', '/proj'];
  });

  afterAll(() => {
    spawnSync('docker', ['rmi', '-f', TAG], { stdio: 'ignore' });
    if (proj) rmSync(proj, { recursive: true, force: true });
  });

  const pytestCmd = ['python3', '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '/proj/tests'];

  test('python3 -m pytest runs a real test project from /vrift deps; same result with the shim off', () => {
    const on = sh('docker', ['run', '--rm', '--network', 'none', ...mount, TAG, ...pytestCmd]);
    const off = sh('docker', ['run', '--rm', '--network', 'none', '-e', 'LD_PRELOAD=', ...mount, TAG, ...pytestCmd]);
    expect(on).toMatch(/^6 passed in /m);
    expect(off).toMatch(/^6 passed in /m);
    const ver = sh('docker', ['run', '--rm', '--network', 'none', TAG, 'python3', '-c', 'import pytest; print(pytest.__version__, pytest.__file__)']);
    expect(ver.trim()).toMatch(/^\d+\.\d+\.\d+ \/vrift\/python\/pytest\/__init__\.py$/);
  });

  test('strace: the shim serves the stat calls pytest makes on /vrift paths', () => {
    const on = straceCount(TAG, pytestCmd, [], mount);
    const off = straceCount(TAG, pytestCmd, ['LD_PRELOAD='], mount);
    process.stderr.write(`python-ci: python3 -m pytest: stat-family syscalls on /vrift paths: ${off.vrift} without the shim, ${on.vrift} with it (all paths: ${off.all} -> ${on.all})\n`);
    expect(on.out).toMatch(/6 passed/);
    expect(off.vrift).toBeGreaterThan(200);
    expect(on.vrift * 20).toBeLessThan(off.vrift);
  });

  test('vrift inspect: the blob vrift-mkblob regenerated is the visible one, over /vrift with the image flags', () => {
    const r = JSON.parse(sh(process.execPath, [CLI, 'inspect', `docker-daemon:${TAG}`, '--json'])) as {
      layers: { index: number; role: string; hasBlob: boolean; vriftPaths: number }[];
      blob: { layer: number; roots: string[]; flags: string[]; entries: number };
      shim: { path: string; libc: string };
    };
    const withBlob = r.layers.filter((l) => l.hasBlob).map((l) => l.index);
    // COPY /out/lib/ (vrift layer's blob) and then RUN vrift-mkblob (the regenerated one, topmost).
    expect(withBlob.length).toBe(2);
    expect(r.blob.layer).toBe(withBlob[1]);
    expect(r.blob.layer).toBe(r.layers.length - 1 - r.layers.slice().reverse().findIndex((l) => l.hasBlob));
    expect(r.blob.roots).toEqual(['/vrift']);
    expect(r.blob.flags).toEqual(['PSFS_H_DEV_RUNTIME', 'PSFS_H_CHECK_ROOT_MTIME']);
    expect(r.blob.entries).toBe(r.layers.reduce((n, l) => n + l.vriftPaths, 0));
    expect(r.shim).toMatchObject({ path: '/usr/lib/vrift/libvrift.so', libc: 'glibc' });
  });

  test('vrift verify (run from the tool image, as in the docs) passes on a running container of the image', () => {
    const c = startContainer(TAG);
    try {
      const r = run('docker', ['run', '--rm', '--network', 'none', '--pid', 'host', '--cap-add', 'SYS_PTRACE', TOOL_IMAGE, 'verify', '--root', `/proc/${c.pid}/root`]);
      expect(r.stdout).toMatch(/verify: OK/);
      expect(r.status).toBe(0);
    } finally {
      removeContainer(c.id);
    }
  });
});

describe('images/node-ci', () => {
  // A real node tool run from the image: the vrift CLI at /opt/app, its ~100 production
  // packages (yargs, dockerode, ssh2, tar-stream, ...) resolved from /vrift/node/node_modules.
  const cmd = ['node', '/opt/app/bin/vrift.js', 'blob', '/opt/app/dist', '-o', '/tmp/x.blob'];

  beforeAll(() => {
    ensureToolImage();
    dockerBuild(path.join(ROOT, 'images', 'node-ci'), NODE_TAG, { BASE: NODE_BASE, VRIFT_IMAGE: TOOL_IMAGE });
  });

  afterAll(() => {
    spawnSync('docker', ['rmi', '-f', NODE_TAG], { stdio: 'ignore' });
  });

  test('node resolves the packages from /vrift and the tool runs the same with the shim off', () => {
    const where = sh('docker', ['run', '--rm', '--network', 'none', '-w', '/opt/app', NODE_TAG, 'node', '-e',
      "for (const m of ['yargs', 'dockerode', 'tar-stream']) console.log(require.resolve(m))"]);
    expect(where.trim().split('\n').every((l) => l.startsWith('/vrift/node/node_modules/'))).toBe(true);
    const on = JSON.parse(sh('docker', ['run', '--rm', '--network', 'none', NODE_TAG, ...cmd])) as { outcome: string; entries: number };
    const off = JSON.parse(sh('docker', ['run', '--rm', '--network', 'none', '-e', 'LD_PRELOAD=', NODE_TAG, ...cmd])) as { outcome: string; entries: number };
    expect(on.outcome).toBe('written');
    expect(on.entries).toBe(off.entries);
    expect(on.entries).toBeGreaterThan(50);
  });

  test("strace: the shim serves Node's statx calls on /vrift paths", () => {
    const on = straceCount(NODE_TAG, cmd);
    const off = straceCount(NODE_TAG, cmd, ['LD_PRELOAD=']);
    process.stderr.write(`node-ci: node vrift.js blob: stat-family syscalls on /vrift paths: ${off.vrift} without the shim, ${on.vrift} with it (all paths: ${off.all} -> ${on.all})\n`);
    expect(off.vrift).toBeGreaterThan(300);
    expect(on.vrift * 20).toBeLessThan(off.vrift);
  });

  test('vrift verify passes on a running container of the image', () => {
    const c = startContainer(NODE_TAG);
    try {
      const r = run(process.execPath, [CLI, 'verify', '--root', `/proc/${c.pid}/root`]);
      expect(r.stdout).toMatch(/verify: OK/);
      expect(r.status).toBe(0);
    } finally {
      removeContainer(c.id);
    }
  });
});
