/**
 * Binary compatibility of the prebuilt shims (issue 7, requirement 3).
 *
 * For every glibc variant, `objdump -T` (binutils, binutils-aarch64-linux-gnu)
 * must show no imported symbol version newer than the architecture's base
 * (GLIBC_2.2.5 on x86_64, GLIBC_2.17 on aarch64), so the .so loads in images
 * with any glibc since then. Every variant must export exactly the 17 stat
 * names and syscall(), nothing else.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BUILD, buildShim } from '../shim/helpers';

const EXPORTS = [
  '__fxstat', '__fxstat64', '__fxstatat', '__fxstatat64', '__lxstat', '__lxstat64', '__xstat', '__xstat64',
  'fstat', 'fstat64', 'fstatat', 'fstatat64', 'lstat', 'lstat64', 'stat', 'stat64', 'statx', 'syscall',
  // refused on domain paths with EROFS, existence probes, chroot (docs/shim-safety.md section 6)
  'open', 'open64', 'openat', 'openat64', '__open_2', '__open64_2', '__openat_2', '__openat64_2',
  'creat', 'creat64', 'fopen', 'fopen64', 'truncate', 'truncate64',
  'unlink', 'unlinkat', 'remove', 'rmdir', 'rename', 'renameat', 'renameat2', 'mkdir', 'mkdirat',
  'chmod', 'fchmodat', 'chown', 'lchown', 'fchownat', 'utime', 'utimes', 'utimensat', 'futimesat', 'lutimes',
  'link', 'linkat', 'symlink', 'symlinkat', 'mknod', 'mknodat', '__xmknod', '__xmknodat', 'mkfifo', 'mkfifoat',
  'setxattr', 'lsetxattr', 'removexattr', 'lremovexattr',
  'mkstemp', 'mkstemp64', 'mkostemp', 'mkostemp64', 'mkstemps', 'mkstemps64', 'mkostemps', 'mkostemps64', 'mkdtemp',
  'chroot', 'access', 'faccessat', 'euidaccess', 'eaccess',
].sort();

interface DynSym {
  undefined: boolean;
  /** "GLIBC_2.2.5", "Base", or "" (musl: no versions) */
  version: string;
  name: string;
}

/** Parse `objdump -T` lines: `<addr> <flags> <section> <size> <version> <name>`. */
export function parseObjdumpT(out: string): DynSym[] {
  const syms: DynSym[] = [];
  for (const line of out.split('\n')) {
    const m = /^[0-9a-f]{8,16}\s(.{7})\s(\S+)\s+[0-9a-f]+\s+(?:\(?([A-Za-z_][\w.]*)\)?\s+)?(\S+)$/.exec(line);
    if (!m || m[1].startsWith('l')) continue; // local (section symbols): not an import or export
    syms.push({ undefined: m[2] === '*UND*', version: m[3] ?? '', name: m[4] });
  }
  return syms;
}

/** "GLIBC_2.17" -> [2, 17] */
const ver = (v: string): number[] => v.replace(/^GLIBC_/, '').split('.').map(Number);
const newer = (a: string, b: string): boolean => {
  const x = ver(a), y = ver(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return false;
};

const VARIANTS: { name: string; objdump: string; base?: string }[] = [
  { name: 'amd64-glibc', objdump: 'objdump', base: 'GLIBC_2.2.5' },
  { name: 'arm64-glibc', objdump: 'aarch64-linux-gnu-objdump', base: 'GLIBC_2.17' },
  { name: 'amd64-musl', objdump: 'objdump' },
  { name: 'arm64-musl', objdump: 'aarch64-linux-gnu-objdump' },
];

beforeAll(() => buildShim());

test('the version parser sees versions newer than the base (the check can fail)', () => {
  const sample = [
    '0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.34) dlsym',
    '0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.2.5) getenv',
    '0000000000000000  w   D  *UND*\t0000000000000000  Base        __gmon_start__',
    '0000000000001234 g    DF .text\t0000000000000042  Base        stat',
  ].join('\n');
  const s = parseObjdumpT(sample);
  expect(s.map((x) => `${x.undefined ? 'U' : 'D'} ${x.version} ${x.name}`)).toEqual(['U GLIBC_2.34 dlsym', 'U GLIBC_2.2.5 getenv', 'U Base __gmon_start__', 'D Base stat']);
  expect(newer('GLIBC_2.34', 'GLIBC_2.2.5')).toBe(true);
  expect(newer('GLIBC_2.16', 'GLIBC_2.2.5')).toBe(true);
  expect(newer('GLIBC_2.2.5', 'GLIBC_2.2.5')).toBe(false);
  expect(newer('GLIBC_2.17', 'GLIBC_2.17')).toBe(false);
  expect(newer('GLIBC_2.3', 'GLIBC_2.2.5')).toBe(true);
});

describe.each(VARIANTS)('$name', ({ name, objdump, base }) => {
  const so = path.join(BUILD, name, 'libvrift.so');
  let syms: DynSym[];
  beforeAll(() => {
    if (!fs.existsSync(so)) throw new Error(`${so} was not built (arm64-musl: run scripts/musl-arm64.sh, then make -C shim)`);
    const out = execFileSync(objdump, ['-T', so], { encoding: 'utf8' });
    syms = parseObjdumpT(out);
    console.log(`${name}: objdump -T imports: ${syms.filter((s) => s.undefined).map((s) => `${s.name}${s.version ? `@${s.version}` : ''}`).join(' ')}`);
  });

  test('exports exactly the 17 stat names, syscall and the immutability/probe entry points', () => {
    expect(syms.filter((s) => !s.undefined).map((s) => s.name).sort()).toEqual(EXPORTS);
  });

  if (base) {
    test(`no imported symbol version newer than ${base}`, () => {
      const glibc = syms.filter((s) => s.undefined && s.version.startsWith('GLIBC_'));
      expect(glibc.map((s) => s.name)).toEqual(expect.arrayContaining(['dlsym', 'dlvsym', 'getenv', '__errno_location']));
      expect(glibc.filter((s) => newer(s.version, base)).map((s) => `${s.name}@${s.version}`)).toEqual([]);
      expect(syms.some((s) => s.name === 'getauxval' || s.name === '__stack_chk_fail')).toBe(false);
    });
    test('needs libdl.so.2 (glibc < 2.34 defines dlsym there) and libc.so.6', () => {
      const d = execFileSync(objdump.replace('objdump', 'readelf'), ['-d', so], { encoding: 'utf8' });
      expect(d).toMatch(/NEEDED.*\[libdl\.so\.2\]/);
      expect(d).toMatch(/NEEDED.*\[libc\.so\.6\]/);
    });
  } else {
    test('links against musl libc.so only, no glibc versions', () => {
      const d = execFileSync(objdump.replace('objdump', 'readelf'), ['-d', so], { encoding: 'utf8' });
      expect([...d.matchAll(/NEEDED.*\[([^\]]+)\]/g)].map((m) => m[1])).toEqual(['libc.so']);
      expect(syms.filter((s) => s.version.startsWith('GLIBC'))).toEqual([]);
    });
  }
});
