/**
 * Deterministic PRNG (mulberry32) for tests, so that a failure reproduces
 * from its seed: one stream of uint32 values.
 */
export function prngU32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** prngU32's stream as floats in [0, 1). */
export function prngUnit(seed: number): () => number {
  const next = prngU32(seed);
  return () => next() / 4294967296;
}
