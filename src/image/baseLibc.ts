/**
 * Which C library a base image's dynamic programs use, for `vrift build`'s
 * choice of shim variant (issue 7): musl when the final filesystem holds a
 * musl dynamic loader (`/lib/ld-musl-<arch>.so.1`, as Alpine and Debian's
 * `musl` package install it), glibc otherwise.
 */
import * as tar from 'tar-stream';
import { normalizeMemberName } from './files';
import type { Image } from './types';

/** Outcome of baseLibc: the libc and the evidence (loader path and layer index, 0-based). */
export interface BaseLibc {
  libc: 'glibc' | 'musl';
  /** e.g. "/lib/ld-musl-x86_64.so.1 in layer 0"; "no /lib/ld-musl-* in 3 layers" for glibc. */
  evidence: string;
}

const MUSL_LOADER = /^(usr\/)?lib\/ld-musl-[^/]+\.so\.1$/;

/**
 * Scan the base layers' tar headers (bodies are skipped, each layer is read
 * once) for a musl loader, applying whiteouts of later layers
 * (`.wh.<name>` and opaque `.wh..wh..opq` of its directory).
 * @throws the layer stream's error (I/O, bad gzip, bad tar)
 */
export async function baseLibc(image: Image): Promise<BaseLibc> {
  const layers = await image.layers();
  const present = new Map<string, number>(); // loader path -> layer index
  for (let i = 0; i < layers.length; i++) {
    const names = await memberNames(await layers[i].openUncompressed());
    for (const n of names) {
      const dir = n.includes('/') ? n.slice(0, n.lastIndexOf('/') + 1) : '';
      const base = n.slice(dir.length);
      if (base === '.wh..wh..opq') {
        for (const k of [...present.keys()]) if (k.startsWith(dir)) present.delete(k);
      } else if (base.startsWith('.wh.')) {
        const gone = dir + base.slice(4);
        for (const k of [...present.keys()]) if (k === gone || k.startsWith(`${gone}/`)) present.delete(k);
      } else if (MUSL_LOADER.test(n)) {
        present.set(n, i);
      }
    }
  }
  const [first] = [...present.entries()].sort();
  if (first) return { libc: 'musl', evidence: `/${first[0]} in layer ${first[1]}` };
  return { libc: 'glibc', evidence: `no /lib/ld-musl-* in ${layers.length} layer(s)` };
}

/** Normalized member names of a tar stream, in order (bodies drained). */
function memberNames(input: NodeJS.ReadableStream): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const names: string[] = [];
    const extract = tar.extract();
    extract.on('entry', (header, stream, next) => {
      const n = normalizeMemberName(header.name);
      if (n) names.push(n);
      stream.on('end', () => next());
      stream.resume();
    });
    extract.on('finish', () => resolve(names));
    extract.on('error', reject);
    input.on('error', reject);
    input.pipe(extract);
  });
}
