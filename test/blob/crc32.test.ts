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
});
