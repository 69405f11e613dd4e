/**
 * `vrift inspect <image>`: what vrift put into an image, read from the image
 * itself (layers' tar headers, the visible PSFS blob, the shim's ELF header),
 * never from a build log.
 */
import type Docker from 'dockerode';
import * as F from '../blob/format';
import { checkBlob } from '../blob/reader';
import { VriftError } from '../errors';
import { sha256Digest } from '../image/digest';
import { describeShim } from '../image/shimInfo';
import { openSource, type SourceRef } from '../image/source';
import { LABEL_BLOB_DIGEST } from '../image/build';
import { BLOB_IMAGE_PATH, SHIM_IMAGE_PATH } from '../layer/types';
import { scanImage } from './imageScan';
import { humanBytes } from '../progress';

/** One layer in the report. Sizes in bytes (stored, i.e. compressed when the media type says so). */
export interface InspectLayer {
  index: number;
  role: 'base' | 'shim' | 'tree';
  digest: string;
  diffID: string;
  size: number;
  mediaType: string;
  /** /vrift paths this layer's tar headers name. */
  vriftPaths: number;
  /** Whether this layer holds /usr/lib/vrift/psfs.blob. */
  hasBlob: boolean;
  /** Whether this layer hides the blob of lower layers (whiteout, opaque directory, non-directory parent; imageScan.ts hidingEntry). */
  hidesBlob: boolean;
}

/** The JSON `vrift inspect --json` prints. */
export interface InspectReport {
  image: string;
  configDigest: string;
  manifestDigest: string;
  /** Config label dev.vrift.version, when set. */
  vriftVersion: string | null;
  layers: InspectLayer[];
  /** The visible blob: what it describes, or, when it does not decode, where it is and why (InspectBlobProblem). */
  blob: null | InspectBlobProblem | {
    digest: string;
    size: number;
    /** 0-based index of the layer the visible blob comes from. */
    layer: number;
    /** Config label dev.vrift.blob.digest (null when absent) and whether it equals `digest`. */
    label: string | null;
    labelMatches: boolean;
    flags: string[];
    roots: string[];
    entries: number;
    files: number;
    dirs: number;
    symlinks: number;
    casObjects: number;
    problem?: undefined;
  };
  /** Logical bytes of tree files vs bytes of CAS objects, from the blob. */
  dedup: null | { logicalBytes: number; casBytes: number; ratio: number };
  shim: null | { path: string; layer: number; arch: string; libc: string; size: number; sha256: string };
  /**
   * When a layer holds the blob (shim) but a later layer hides it: `blob`
   * (`shim`) is null and this names both layers (0-based) and the hiding
   * member, e.g. `usr/lib/vrift/.wh.psfs.blob`; null otherwise.
   */
  blobRemoved: null | { layer: number; by: number; entry: string };
  shimRemoved: null | { layer: number; by: number; entry: string };
  /** Config label dev.vrift.blob.digest, null when absent (also in `blob.label`). */
  label: string | null;
}

/** A visible blob that does not decode: the rest of the report stands, `vrift inspect` exits 1. */
export interface InspectBlobProblem {
  digest: string;
  size: number;
  layer: number;
  label: string | null;
  labelMatches: boolean;
  /** corrupt: checksum, bounds, table (rebuild the image); unsupported: written by a newer vrift (upgrade this one). */
  problem: 'corrupt' | 'unsupported';
  /** What the decoder found, e.g. "body checksum mismatch (body_crc32)". */
  reason: string;
}

const S_IFMT = 0o170000;

/** A dev.vrift.blob.digest label on an image that holds no PSFS blob (the label was copied or set by hand). */
function strayLabelError(image: string, label: string): VriftError {
  return new VriftError(
    `inspecting ${image}: the ${LABEL_BLOB_DIGEST} label says ${label} but the image holds no PSFS blob (no layer has ${BLOB_IMAGE_PATH}); the label was copied or set by hand: remove it, or build the image with \`vrift build\``,
  );
}

/**
 * The error `vrift inspect` exits with (1) after printing its report: a later
 * layer removed the blob (whiteout), the dev.vrift.blob.digest label is set
 * but no layer holds a blob, the blob does not decode, or the label names
 * another blob than the one the image holds; undefined when the blob is fine
 * (or absent without a label, or unlabelled: blobs written by `vrift-mkblob`
 * in a Dockerfile carry no label).
 */
export function blobProblemError(r: InspectReport): VriftError | undefined {
  if (r.blobRemoved) {
    const { layer, by, entry } = r.blobRemoved;
    return new VriftError(
      `inspecting ${r.image}: the PSFS blob ${BLOB_IMAGE_PATH} of layer ${layer + 1} was removed by layer ${by + 1} (${entry}): the image has no blob, so the shim answers nothing from memory (every stat passes through); rebuild the image with \`vrift build\` and keep later layers from deleting /usr/lib/vrift`,
    );
  }
  if (!r.blob && r.label) return strayLabelError(r.image, r.label);
  const b = r.blob;
  if (b && !b.problem && b.label && !b.labelMatches) {
    // The label is written with the blob by `vrift build`: another blob means a later layer replaced it (or the label was edited).
    return new VriftError(
      `inspecting ${r.image}: the ${LABEL_BLOB_DIGEST} label says ${b.label} but the PSFS blob in layer ${b.layer + 1} is ${b.digest}: a later layer replaced the blob, or the label was changed; rebuild the image with \`vrift build\` (or run \`vrift verify\` inside it to check the blob against the tree)`,
    );
  }
  if (!b?.problem) return undefined;
  const advice = b.problem === 'corrupt'
    ? 'rebuild the image with `vrift build` (the build writes the blob)'
    : 'the blob was written by a newer vrift: inspect it with that version, or upgrade this one';
  return new VriftError(`inspecting ${r.image}: the PSFS blob in layer ${b.layer + 1} is ${b.problem} (${b.reason}); ${advice}`);
}

/**
 * Inspect an image from any `--base` transport.
 * @returns the report; a visible blob that does not decode is reported as such
 *   (InspectBlobProblem, see blobProblemError), with the rest of the report
 * @throws VriftError when the image cannot be read or has no vrift layers
 *   (naming the dev.vrift.blob.digest label when the config has one)
 */
export async function inspectImage(src: SourceRef, docker: () => Docker, tmpRoot?: string): Promise<InspectReport> {
  const opened = await openSource(src, docker, tmpRoot);
  try {
    const image = opened.image;
    const scan = await scanImage(image, src.raw);
    const noVriftLayers = !scan.layers.some((l) => l.role !== 'base');
    if (noVriftLayers && scan.labelBlobDigest) throw strayLabelError(src.raw, scan.labelBlobDigest);
    if (noVriftLayers) {
      throw new VriftError(`inspecting ${src.raw}: the image has no vrift layers (no /vrift tree, PSFS blob or shim) and no ${'dev.vrift.blob.digest'} label; build one with \`vrift build --base ${src.raw} --add <dir>:/vrift/<name> ...\``);
    }
    const report: InspectReport = {
      image: src.raw,
      configDigest: sha256Digest(await image.rawConfig()),
      manifestDigest: sha256Digest(await image.rawManifest()),
      vriftVersion: scan.labelVersion ?? null,
      layers: scan.layers.map((l) => ({
        index: l.index, role: l.role, digest: l.digest, diffID: l.diffID, size: l.size, mediaType: l.mediaType,
        vriftPaths: l.vriftPaths.size, hasBlob: l.blob !== undefined, hidesBlob: l.hides.blob !== undefined,
      })),
      blob: null,
      dedup: null,
      shim: null,
      blobRemoved: scan.blobRemoved ?? null,
      shimRemoved: scan.shimRemoved ?? null,
      label: scan.labelBlobDigest ?? null,
    };
    let decoded: ReturnType<typeof checkBlob> | undefined;
    // What is known of the blob file whether or not it decodes.
    const blobFile = scan.blob && scan.blobDigest !== undefined && scan.blobLayer !== undefined
      ? { digest: scan.blobDigest, size: scan.blob.length, layer: scan.blobLayer, label: scan.labelBlobDigest ?? null, labelMatches: scan.labelBlobDigest === scan.blobDigest }
      : undefined;
    if (scan.blob && blobFile) {
      try {
        // Validated whole (buckets too: the shim reads them), in place from its pages: no object per entry.
        decoded = checkBlob(scan.blob);
      } catch (err) {
        if (!(err instanceof VriftError)) throw err;
        // "decoding PSFS blob: <why>; <advice for a blob file>": that advice is for `vrift blob`, not for an image.
        const m = /^decoding PSFS blob: (.*); ([^;]*)$/.exec(err.message);
        report.blob = { ...blobFile, problem: m && /newer vrift/.test(m[2]) ? 'unsupported' : 'corrupt', reason: m ? m[1] : err.message };
      }
    }
    if (decoded && blobFile) {
      const roots = decoded.roots.map((r) => r.toString('utf8'));
      const casPrefixes = decoded.roots.map((r) => `${r.toString('latin1')}/.cas/`);
      let files = 0, dirs = 0, symlinks = 0, casObjects = 0;
      let logical = 0n, cas = 0n;
      const rows = decoded.rows;
      for (let k = 0; k < rows.count; k++) {
        const t = rows.mode(k) & S_IFMT;
        if (t === 0o040000) dirs++;
        else if (t === 0o120000) symlinks++;
        else if (t === 0o100000) {
          const p = rows.path(k).toString('latin1');
          if (casPrefixes.some((c) => p.startsWith(c))) {
            casObjects++;
            cas += rows.size(k);
          } else {
            files++;
            logical += rows.size(k);
          }
        }
      }
      const flags = [
        ...(decoded.header.flags & F.H_DEV_RUNTIME ? ['PSFS_H_DEV_RUNTIME'] : []),
        ...(decoded.header.flags & F.H_CHECK_ROOT_MTIME ? ['PSFS_H_CHECK_ROOT_MTIME'] : []),
        ...(decoded.header.flags & F.H_IDENTITY_TAG ? ['PSFS_H_IDENTITY_TAG'] : []),
      ];
      report.blob = {
        ...blobFile,
        flags,
        roots,
        entries: rows.count,
        files, dirs, symlinks, casObjects,
      };
      report.dedup = { logicalBytes: Number(logical), casBytes: Number(cas), ratio: cas === 0n ? 1 : Number(logical) / Number(cas) };
    }
    if (scan.shim && scan.shimLayer !== undefined) {
      const info = describeShim(scan.shim, SHIM_IMAGE_PATH);
      report.shim = { path: SHIM_IMAGE_PATH, layer: scan.shimLayer, arch: info.arch, libc: info.libc, size: info.size, sha256: info.sha256 };
    }
    return report;
  } finally {
    await opened.dispose().catch(() => undefined);
  }
}

const short = (d: string): string => d.replace(/^sha256:/, '').slice(0, 12);


/** The `label` line: the label and whether it names the blob (null: there is no blob); just `(none)` without a label. */
function labelLine(label: string | null, matches: boolean | null): string {
  if (label === null) return 'label      (none)';
  return `label      ${label} ${matches === null ? '(the image has no blob)' : matches ? '(matches the blob)' : '(DOES NOT match the blob)'}`;
}

/** The report as a readable table (what `vrift inspect` prints without --json). */
export function formatInspect(r: InspectReport): string {
  const lines: string[] = [];
  lines.push(`image      ${r.image}`);
  lines.push(`config     ${r.configDigest}`);
  lines.push(`manifest   ${r.manifestDigest}`);
  if (r.vriftVersion) lines.push(`vrift      ${r.vriftVersion}`);
  lines.push('');
  lines.push('LAYER  ROLE  DIGEST        DIFFID        SIZE        /vrift PATHS');
  for (const l of r.layers) {
    const role = l.role === 'base' ? '-' : l.role;
    lines.push(`${String(l.index + 1).padEnd(6)} ${role.padEnd(5)} ${short(l.digest).padEnd(13)} ${short(l.diffID).padEnd(13)} ${humanBytes(l.size).padEnd(11)} ${l.vriftPaths || ''}${l.hasBlob ? ' +blob' : ''}${l.hidesBlob ? ' -blob' : ''}`);
  }
  lines.push('');
  if (r.blob?.problem) {
    const b = r.blob;
    lines.push(`blob       ${b.problem} (${b.reason}): ${b.digest} (${humanBytes(b.size)}, layer ${b.layer + 1})`);
    lines.push(labelLine(b.label, b.labelMatches));
  } else if (r.blob) {
    const b = r.blob;
    lines.push(`domain     ${b.roots.join(', ')}`);
    lines.push(`entries    ${b.entries} (${b.files} files, ${b.dirs} dirs, ${b.symlinks} symlinks, ${b.casObjects} CAS objects)`);
    lines.push(`blob       ${b.digest} (${humanBytes(b.size)}, layer ${b.layer + 1}, flags ${b.flags.join('|') || 'none'})`);
    lines.push(labelLine(b.label, b.labelMatches));
  } else if (r.blobRemoved) {
    lines.push(`blob       REMOVED: layer ${r.blobRemoved.layer + 1} has ${BLOB_IMAGE_PATH}, layer ${r.blobRemoved.by + 1} deletes it (${r.blobRemoved.entry})`);
    lines.push(labelLine(r.label, null));
  } else {
    lines.push(`blob       none (no ${BLOB_IMAGE_PATH} in any layer)`);
    if (r.label) lines.push(labelLine(r.label, null));
  }
  if (r.dedup) lines.push(`dedup      ${r.dedup.ratio.toFixed(3)}x (${humanBytes(r.dedup.logicalBytes)} of tree files in ${humanBytes(r.dedup.casBytes)} of CAS objects)`);
  lines.push(r.shim ? `shim       ${r.shim.path} linux/${r.shim.arch} ${r.shim.libc}, ${r.shim.size} bytes, ${r.shim.sha256} (layer ${r.shim.layer + 1})`
    : r.shimRemoved ? `shim       REMOVED: layer ${r.shimRemoved.layer + 1} has ${SHIM_IMAGE_PATH}, layer ${r.shimRemoved.by + 1} deletes it (${r.shimRemoved.entry})`
      : 'shim       none');
  return `${lines.join('\n')}\n`;
}
