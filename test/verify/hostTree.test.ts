/**
 * `vrift verify` on a host tree described by `vrift blob` (real identity):
 * the kernel is the oracle; times before 1970 with a fractional part must be
 * compared as POSIX timespecs (tv_nsec in 0..999999999), not as truncated
 * divisions.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'vrift.js');
const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'vrift-verify-host-'));
  chmodSync(tmp, 0o755);
  const dom = path.join(tmp, 'dom');
  mkdirSync(path.join(dom, 'sub'), { recursive: true });
  writeFileSync(path.join(dom, 'old'), 'x');
  writeFileSync(path.join(dom, 'sub', 'new'), 'y');
  utimesSync(path.join(dom, 'old'), -1.5, -1.5); // 1969-12-31T23:59:58.5Z
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('a pre-1970 fractional mtime verifies clean; a later change is reported (exit 3)', () => {
  const dom = path.join(tmp, 'dom');
  const blob = path.join(tmp, 'blob');
  expect(run(['blob', dom, '-o', blob]).status).toBe(0);
  const ok = run(['verify', '--blob', blob, '--json']);
  expect(ok.stderr).toBe('');
  expect(JSON.parse(ok.stdout).mismatches).toEqual([]);
  expect(ok.status).toBe(0);

  writeFileSync(path.join(dom, 'sub', 'new'), 'changed');
  const bad = run(['verify', '--blob', blob, '--json']);
  expect(bad.status).toBe(3);
  const fields = JSON.parse(bad.stdout).mismatches.map((m: { path: string; field: string }) => `${path.basename(m.path)} ${m.field}`);
  expect(fields).toEqual(expect.arrayContaining(['new st_size', 'new st_mtime']));
});
