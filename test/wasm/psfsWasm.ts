/**
 * Loader for test/wasm/build/psfs_core.wasm (shim/psfs_core.c + test/wasm/glue.c
 * compiled by test/wasm/build-wasm.mjs): a typed handle on the C reader for jest.
 *
 * Every call copies its inputs into the module's linear memory (bump arena,
 * reset by loadBlob) and returns plain JS values.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const WASM_PATH = path.join(__dirname, 'build', 'psfs_core.wasm');

type Fn = (...args: number[]) => number;

// tsconfig's lib is ES2022 without DOM, which is where TypeScript declares the
// WebAssembly namespace; the runtime (Node) has it. Just what is used here:
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WebAssembly = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Outcome names of enum psfs_outcome, by value. */
export const OUTCOME = ['PASS', 'HIT', 'ENOENT', 'ENOTDIR'] as const;
export type Outcome = (typeof OUTCOME)[number];

/** The C reader instantiated once; methods mirror shim/psfs_core.h. */
export class PsfsWasm {
  readonly exports: Record<string, Fn>;
  private readonly memory: WasmMemory;
  private blobAddr = 0;
  private blobLen = 0;
  private queryTop = 0;
  private queryEnd = 0;

  constructor(bytes: Buffer = PsfsWasm.readModule()) {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    this.memory = instance.exports.memory as WasmMemory;
    this.exports = instance.exports as unknown as Record<string, Fn>;
  }

  /** The compiled module bytes; throws with what to run when it was not built. */
  static readModule(): Buffer {
    if (!fs.existsSync(WASM_PATH)) throw new Error(`${WASM_PATH} is missing: run \`npm run build:wasm\` first`);
    return fs.readFileSync(WASM_PATH);
  }

  /** Whether the module exports `name`. */
  has(name: string): boolean {
    return typeof this.exports[name] === 'function';
  }

  /** Call an exported uint32-returning function; the result as an unsigned number. */
  u32(name: string, ...args: number[]): number {
    const f = this.exports[name];
    if (typeof f !== 'function') throw new Error(`wasm module has no export ${name}`);
    return f(...args) >>> 0;
  }

  /** Current view of linear memory (re-read after every allocation: memory may grow). */
  get mem(): Buffer {
    return Buffer.from(this.memory.buffer);
  }

  /** Copy `bytes` (plus a NUL when asked) into the query area. */
  private put(bytes: Uint8Array, nul = false): number {
    const n = bytes.length + (nul ? 1 : 0);
    if (this.queryTop + n > this.queryEnd) {
      // Out of query space: take more from the arena (the blob is then no
      // longer the last thing in memory, which only weakens the trap check).
      const addr = this.u32('arena_alloc', n);
      if (addr === 0) throw new Error('wasm arena exhausted');
      this.write(addr, bytes, nul);
      return addr;
    }
    const addr = this.queryTop;
    this.queryTop = (this.queryTop + n + 7) & ~7;
    this.write(addr, bytes, nul);
    return addr;
  }

  private write(addr: number, bytes: Uint8Array, nul: boolean): void {
    const m = this.mem;
    m.set(bytes, addr);
    if (nul) m[addr + bytes.length] = 0;
  }

  /** Read `len` bytes at `addr` of linear memory (a copy). */
  read(addr: number, len: number): Buffer {
    return Buffer.from(this.mem.subarray(addr, addr + len));
  }

  /**
   * Copy `blob` into fresh memory and run psfs_view_init on it: 0, -22 or -95.
   *
   * The blob is placed so that it ends exactly at the end of linear memory:
   * any read the C code makes past the blob's last byte traps (RuntimeError)
   * instead of silently reading other memory. Query strings go into an area
   * reserved before it. `blob.length` must be a multiple of 8 for the blob to
   * be 8-aligned (psfs_view_init rejects a misaligned base).
   */
  loadBlob(blob: Uint8Array): number {
    this.exports.arena_reset();
    const QUERY_AREA = 1 << 20;
    this.queryTop = this.u32('arena_alloc', QUERY_AREA);
    this.queryEnd = this.queryTop + QUERY_AREA;
    const top = this.u32('arena_alloc', 0);
    const PAGE = 65536;
    const end = Math.max(this.memory.buffer.byteLength, Math.ceil((top + blob.length) / PAGE) * PAGE);
    if (this.u32('arena_alloc', end - top) === 0) throw new Error('wasm arena exhausted');
    if (this.memory.buffer.byteLength !== end) throw new Error('blob placement: memory did not end where expected');
    this.blobAddr = end - blob.length;
    this.write(this.blobAddr, blob, false);
    this.blobLen = blob.length;
    return this.exports.w_view_init(this.blobAddr, blob.length);
  }

  /** Run psfs_view_init on [base + delta, +size) of the loaded blob (alignment / size tests). */
  viewInitAt(delta: number, size: number): number {
    return this.exports.w_view_init(this.blobAddr + delta, size);
  }

  /** Size of the loaded blob in bytes. */
  get blobSize(): number {
    return this.blobLen;
  }

  /** Address of the loaded blob in linear memory. */
  get blobBase(): number {
    return this.blobAddr;
  }

  /**
   * psfs_tagged: index of the entry a kernel answer with these st_* fields
   * describes (PSFS_H_IDENTITY_TAG blobs), or -1.
   */
  tagged(f: { mode: number; uid: number; gid: number; nlink: number; size: bigint; mtimeSec: bigint; mtimeNsec: number }): number {
    const w = this.exports.w_tagged as unknown as (...a: (number | bigint)[]) => number;
    return w(f.mode, f.uid, f.gid, f.nlink, f.size, f.mtimeSec, f.mtimeNsec);
  }

  /** psfs_lookup: index of the entry whose key equals `key`, or -1. */
  lookup(key: Uint8Array): number {
    return this.exports.w_lookup(this.put(key), key.length);
  }

  /**
   * psfs_resolve on `p` (NUL appended; null passes a NULL pointer).
   * @returns outcome name and the found entry's index (-1 when none)
   */
  resolve(p: Uint8Array | string | null, follow: boolean): { outcome: Outcome; index: number } {
    const addr = p === null ? 0 : this.put(typeof p === 'string' ? Buffer.from(p, 'latin1') : p, true);
    const r = this.exports.w_resolve(addr, follow ? this.u32('c_PSFS_FOLLOW') : 0);
    const outcome = OUTCOME[r];
    if (outcome === undefined) throw new Error(`psfs_resolve returned ${r}, not a psfs_outcome`);
    return { outcome, index: this.exports.w_resolved_index() };
  }

  /** psfs_crc32 of `bytes`. */
  crc32(bytes: Uint8Array): number {
    return this.u32('w_crc32', this.put(bytes), bytes.length);
  }

  /** psfs_hash(seed, bytes). */
  hash(seed: number, bytes: Uint8Array): number {
    return this.u32('w_hash', seed >>> 0, this.put(bytes), bytes.length);
  }
}
