#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Compile the freestanding PSFS reader (shim/psfs_core.c) plus
// test/wasm/glue.c to wasm32 with @yowasp/clang (clang running as
// WebAssembly, so no native compiler is needed), writing
// test/wasm/build/psfs_core.wasm for the jest conformance tests.
//
// Cached: the output is rebuilt only when the sha256 over the inputs (sources,
// this script, the flags and the @yowasp/clang version) changes; the hash is
// stored next to the output. `--force` rebuilds anyway.
//
// Usage: node test/wasm/build-wasm.mjs [--force]   (npm run build:wasm)
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const outDir = join(here, 'build');
const out = join(outDir, 'psfs_core.wasm');
const hashFile = `${out}.inputs-sha256`;

const sources = {
  'psfs_format.h': join(root, 'shim', 'psfs_format.h'),
  'psfs_core.h': join(root, 'shim', 'psfs_core.h'),
  'psfs_core.c': join(root, 'shim', 'psfs_core.c'),
  'glue.c': join(here, 'glue.c'),
};
const flags = [
  '--target=wasm32',
  '-ffreestanding',
  '-nostdlib',
  '-O2',
  '-std=c11',
  '-Wall',
  '-Wextra',
  '-Werror',
  // wasm-ld fails on undefined symbols by default (e.g. a memcpy the compiler
  // emitted): the shim's core must need nothing from libc.
  '-Wl,--no-entry',
];

function fail(msg) {
  process.stderr.write(`build-wasm: ${msg}\n`);
  process.exit(1);
}

const files = {};
for (const [name, p] of Object.entries(sources)) {
  if (!existsSync(p)) fail(`building the wasm reader: ${relative(root, p)} does not exist; it is the C reader the conformance tests load`);
  files[name] = readFileSync(p);
}

// The compiler's version is part of the cache key. Its package.json is not
// exported, so find it from the entry point (gen/bundle.js -> package root).
const require = createRequire(import.meta.url);
let clangVersion;
try {
  const pkgDir = resolve(dirname(require.resolve('@yowasp/clang')), '..');
  clangVersion = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).version;
} catch (err) {
  fail(`building the wasm reader: @yowasp/clang is not installed (${err.message}); run \`npm ci\``);
}
const h = createHash('sha256');
h.update(JSON.stringify({ flags, clangVersion }));
h.update(readFileSync(fileURLToPath(import.meta.url)));
for (const name of Object.keys(files).sort()) h.update(name).update('\0').update(files[name]).update('\0');
const digest = h.digest('hex');

if (!process.argv.includes('--force') && existsSync(out) && existsSync(hashFile) && readFileSync(hashFile, 'utf8').trim() === digest) {
  process.stdout.write(`build-wasm: ${relative(root, out)} is up to date\n`);
  process.exit(0);
}

const { runClang } = await import('@yowasp/clang');
let result;
try {
  result = await runClang(['clang', ...flags, 'psfs_core.c', 'glue.c', '-o', 'psfs_core.wasm'], files);
} catch (err) {
  fail(`compiling shim/psfs_core.c + test/wasm/glue.c to wasm32 failed (clang output above): ${err?.message ?? err}`);
}
const wasm = result?.['psfs_core.wasm'];
if (!wasm) fail('clang produced no psfs_core.wasm');
// Validate before installing so a broken output never poisons the cache.
if (!WebAssembly.validate(wasm)) fail('clang produced an invalid wasm module');

mkdirSync(outDir, { recursive: true });
const tmp = `${out}.tmp-${process.pid}`;
writeFileSync(tmp, wasm);
renameSync(tmp, out);
writeFileSync(hashFile, `${digest}\n`);
process.stdout.write(`build-wasm: wrote ${relative(root, out)} (${wasm.length} bytes)\n`);
