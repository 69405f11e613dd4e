/**
 * OCI image layout reader (image-layout.md): `oci-layout`, `index.json`,
 * `blobs/<alg>/<hex>`, as a directory or inside a tar.
 *
 * `index.json` may point at image manifests directly or through nested
 * image indexes (multi-platform images). One manifest is selected: by the
 * `org.opencontainers.image.ref.name` annotation when a ref is given, then
 * by platform (default linux/amd64) when more than one is left. Attestation
 * manifests (platform unknown/unknown) are skipped.
 */
import { promises as fsp } from 'node:fs';
import { VriftError } from '../errors';
import { digestHex, sha256Digest } from './digest';
import { parseImageConfig } from './dockerArchive';
import { DirFileSource, TarFileSource, type FileSource } from './files';
import { layerFromMember } from './layer';
import { imageFromParts } from './partial';
import { MediaType, type Descriptor, type Image, type ImageIndex, type Manifest, type Platform } from './types';

/** Options for reading an OCI layout. */
export interface OciLayoutOptions {
  /** Select the manifest annotated with this `org.opencontainers.image.ref.name`. Default: any. */
  ref?: string;
  /** Platform wanted when several manifests remain, `os/arch[/variant]`. Default `linux/amd64`. */
  platform?: string;
}

const REF_NAME = 'org.opencontainers.image.ref.name';

function isIndex(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

/**
 * Parse `os/arch[/variant]`.
 * @throws VriftError when malformed
 */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new VriftError(`parsing platform ${JSON.stringify(s)}: use os/arch[/variant], e.g. linux/amd64`);
  }
  return { os: parts[0], architecture: parts[1], ...(parts[2] ? { variant: parts[2] } : {}) };
}

function platformMatches(p: Platform | undefined, want: Platform): boolean {
  if (!p) return false;
  return p.os === want.os && p.architecture === want.architecture && (want.variant === undefined || p.variant === want.variant);
}

async function readBlob(files: FileSource, d: Descriptor, max?: number): Promise<Buffer> {
  const name = `blobs/sha256/${digestHex(d.digest)}`;
  const buf = await files.readFile(name, max);
  if (sha256Digest(buf) !== d.digest) {
    throw new VriftError(`reading ${files.where}: blob ${d.digest} does not match its digest; the layout is corrupt`);
  }
  return buf;
}

/**
 * Read one image from an OCI image layout.
 * @throws VriftError when the layout is malformed, no manifest matches, or
 *   several match and the platform does not decide
 */
export async function readOciLayout(files: FileSource, opts: OciLayoutOptions = {}): Promise<Image> {
  if (!(await files.has('index.json'))) {
    throw new VriftError(`reading ${files.where}: index.json is missing; this is not an OCI image layout (make one with \`skopeo copy docker-daemon:<image> oci:<dir>\`)`);
  }
  if (await files.has('oci-layout')) {
    const v = JSON.parse((await files.readFile('oci-layout')).toString('utf8')) as { imageLayoutVersion?: string };
    if (v.imageLayoutVersion !== '1.0.0') {
      throw new VriftError(`reading ${files.where}: imageLayoutVersion ${JSON.stringify(v.imageLayoutVersion)} is not supported (1.0.0 is)`);
    }
  }
  const top = JSON.parse((await files.readFile('index.json')).toString('utf8')) as ImageIndex;
  if (!Array.isArray(top.manifests)) throw new VriftError(`reading ${files.where}: index.json has no manifests array`);
  const want = parsePlatform(opts.platform ?? 'linux/amd64');

  let candidates = top.manifests;
  if (opts.ref !== undefined) {
    candidates = candidates.filter((d) => d.annotations?.[REF_NAME] === opts.ref);
    if (candidates.length === 0) {
      const names = top.manifests.map((d) => d.annotations?.[REF_NAME]).filter(Boolean);
      throw new VriftError(`reading ${files.where}: no manifest named ${JSON.stringify(opts.ref)}; the layout has ${names.join(', ') || 'no named manifests'}`);
    }
  }
  // Flatten nested indexes into image manifests (descriptor platform kept).
  const manifests: Descriptor[] = [];
  const visit = async (ds: Descriptor[], depth: number): Promise<void> => {
    if (depth > 4) throw new VriftError(`reading ${files.where}: image indexes nest too deeply`);
    for (const d of ds) {
      if (isIndex(d.mediaType)) {
        const idx = JSON.parse((await readBlob(files, d)).toString('utf8')) as ImageIndex;
        await visit(idx.manifests ?? [], depth + 1);
      } else if (d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown') {
        continue; // buildx attestation manifest
      } else {
        manifests.push(d);
      }
    }
  };
  await visit(candidates, 0);
  if (manifests.length === 0) throw new VriftError(`reading ${files.where}: no image manifest found`);
  let chosen = manifests;
  if (manifests.length > 1) {
    chosen = manifests.filter((d) => platformMatches(d.platform, want));
    if (chosen.length !== 1) {
      const have = manifests.map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ''}` : 'unspecified'));
      throw new VriftError(`reading ${files.where}: ${chosen.length === 0 ? 'no' : 'more than one'} manifest for platform ${opts.platform ?? 'linux/amd64'}; the layout has ${have.join(', ')} (choose a ref or platform)`);
    }
  }
  const desc = chosen[0];
  const rawManifest = await readBlob(files, desc);
  const manifest = JSON.parse(rawManifest.toString('utf8')) as Manifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new VriftError(`reading ${files.where}: manifest ${desc.digest} has no config or layers`);
  }
  const rawConfig = await readBlob(files, manifest.config);
  const config = parseImageConfig(rawConfig, files.where);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new VriftError(`reading ${files.where}: manifest lists ${manifest.layers.length} layers but the config has ${config.rootfs.diff_ids.length} diff_ids`);
  }
  const layers = manifest.layers.map((l, i) =>
    layerFromMember(files, `blobs/sha256/${digestHex(l.digest)}`, {
      what: `layer ${i + 1} (${l.digest}) of ${files.where}`,
      digest: l.digest,
      diffID: config.rootfs.diff_ids[i],
      size: l.size,
      mediaType: l.mediaType,
    }),
  );
  return imageFromParts(rawConfig, config, layers, rawManifest);
}

/**
 * Open an OCI image layout given as a directory or a tar file.
 * @throws VriftError when the path is missing or not a layout
 */
export async function readOciLayoutPath(p: string, opts: OciLayoutOptions = {}): Promise<Image> {
  let st;
  try {
    st = await fsp.stat(p);
  } catch (err) {
    throw new VriftError(`reading OCI layout ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}; check the path after oci:`, { cause: err });
  }
  const files = st.isDirectory() ? new DirFileSource(`oci:${p}`, p) : await TarFileSource.index(p, `oci:${p}`);
  return readOciLayout(files, opts);
}
