import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { crc32, crc32Fallback } from '../../src/blob/crc32';

describe('crc32', () => {
  test('JS fallback equals zlib on random inputs and the check value', () => {
    expect(crc32Fallback(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    for (let i = 0; i < 200; i++) {
      const b = randomBytes(i * 7);
      expect(crc32Fallback(b)).toBe((zlib as unknown as { crc32: (d: Uint8Array) => number }).crc32(b) >>> 0);
    }
  });

  test('continuing a CRC over a split input gives the CRC of the whole (both implementations)', () => {
    const b = randomBytes(1000);
    for (const cut of [0, 1, 499, 1000]) {
      const [x, y] = [b.subarray(0, cut), b.subarray(cut)];
      expect(crc32(y, crc32(x))).toBe(crc32(b));
      expect(crc32Fallback(y, crc32Fallback(x))).toBe(crc32(b));
    }
  });
});
