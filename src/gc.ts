import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's gc(), made available once (--expose-gc, then taken from a new context); null when that failed. */
let gcFn: (() => void) | null | undefined;

/**
 * One full garbage collection now, best effort (nothing happens when V8's
 * gc() cannot be had). V8 collects on heap pressure, but most of what a
 * build phase leaves behind lives outside its heap (ArrayBuffers: the blob
 * encoder's arrays, tar read chunks), which count only toward an external
 * limit of ~64 MiB: without a collection between phases that garbage stayed
 * in the next phase's peak RSS (measured: src/tree/README.md "Memory").
 */
export function collectGarbage(): void {
  if (gcFn === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    } catch {
      gcFn = null;
    }
  }
  try {
    gcFn?.();
  } catch {
    // Only an optimisation of peak memory.
  }
}
