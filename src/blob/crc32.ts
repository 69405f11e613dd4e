import * as zlib from 'node:zlib';

let table: Uint32Array | undefined;

/** CRC-32 in JS, for Node.js releases without zlib.crc32 (before 20.15 / 22.2). */
function crc32js(data: Uint8Array, prev = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = (prev ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * CRC-32 (IEEE 802.3, reflected, as zlib's crc32) of `data`, as uint32;
 * with `prev` (the CRC-32 of the bytes before `data`) it continues that
 * one, so crc32(b, crc32(a)) === crc32(a + b).
 * Uses zlib.crc32 where Node.js has it, so vrift also runs on Node 18
 * (Debian bookworm's nodejs, used by the tool image and the devcontainer feature).
 */
export const crc32: (data: Uint8Array, prev?: number) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function'
    ? (data, prev = 0) => (zlib as unknown as { crc32: (d: Uint8Array, v: number) => number }).crc32(data, prev) >>> 0
    : crc32js;

/** Exposed for tests: the JS fallback. */
export const crc32Fallback = crc32js;
