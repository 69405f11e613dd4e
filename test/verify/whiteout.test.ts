/**
 * hidingEntry (src/verify/imageScan.ts): which layer members hide a file of
 * lower layers, per the OCI image spec, layer.md "Whiteouts" and
 * "Changeset over existing files". The real-engine cases (RUN rm, rm -rf of
 * the parent, an opaque directory) are in test/inspect/inspect.test.ts and
 * test/e2e/merge.test.ts; these cover the markers a Dockerfile does not
 * easily produce (an opaque grandparent, the root).
 */
import { hidingEntry } from '../../src/verify/imageScan';

const BLOB = 'usr/lib/vrift/psfs.blob';

test('a whiteout of the file or of any parent directory hides it', () => {
  for (const n of ['usr/lib/vrift/.wh.psfs.blob', 'usr/lib/.wh.vrift', 'usr/.wh.lib', '.wh.usr']) expect([n, hidingEntry(n, 'file', BLOB)]).toEqual([n, true]);
});

test('an opaque marker in the file\'s directory or any parent directory (the root too) hides it', () => {
  for (const n of ['usr/lib/vrift/.wh..wh..opq', 'usr/lib/.wh..wh..opq', 'usr/.wh..wh..opq', '.wh..wh..opq']) expect([n, hidingEntry(n, 'file', BLOB)]).toEqual([n, true]);
});

test('a non-directory at a parent path (directory replaced by a file or symlink), or a non-regular member at the path, hides it', () => {
  expect(hidingEntry('usr/lib/vrift', 'symlink', BLOB)).toBe(true);
  expect(hidingEntry('usr/lib', 'file', BLOB)).toBe(true);
  expect(hidingEntry(BLOB, 'directory', BLOB)).toBe(true);
  expect(hidingEntry(BLOB, 'symlink', BLOB)).toBe(true);
});

test('siblings, prefixes that are not parents, directories and the file itself (a new blob) do not hide it', () => {
  for (const [n, t] of [
    ['usr/lib/vrift/.wh.libvrift.so', 'file'],
    ['usr/lib/vrift/.wh.psfs', 'file'],
    ['usr/lib/.wh.vrif', 'file'],
    ['usr/lib/vrift2/.wh..wh..opq', 'file'],
    ['usr/lib/vrift/sub/.wh..wh..opq', 'file'],
    ['usr/lib/vrif', 'file'],
    ['usr/lib/vrift', 'directory'],
    ['usr/lib/vrift/.wh.', 'file'],
    ['usr/lib/vrift/.wh..', 'file'],
    [BLOB, 'file'],
  ] as const) expect([n, hidingEntry(n, t, BLOB)]).toEqual([n, false]);
});
