/**
 * Lazy image mutation (after go-containerregistry's pkg/v1/mutate): the
 * result wraps the base without touching it, and builds the new config and
 * manifest once, on first use.
 *
 * Time policy (reproducible builds, as ko and apko do): one `created` time is
 * used for the config's `created` and every added history entry. The build
 * command passes SOURCE_DATE_EPOCH when set and 1970-01-01T00:00:00Z (epoch
 * 0) otherwise, so the same inputs give the same config digest on any day.
 */
import { VriftError } from '../errors';
import { canonicalJsonBytes } from './json';
import { imageFromParts } from './partial';
import type { HistoryEntry, Image, ImageConfig, Layer } from './types';

/** A layer to append and the history entry that describes it. */
export interface Addendum {
  layer: Layer;
  /** `created_by`, `comment`, ...; `created` defaults to the patch's `created`. */
  history: HistoryEntry;
}

/** Config changes applied together with the appended layers. */
export interface ConfigPatch {
  /** RFC 3339 time for config `created` and added history entries. Default: config `created` unchanged, history entries without `created`. */
  created?: string;
  /** Rewrites `config.Env` ("KEY=value" strings, order kept). */
  env?: (env: string[]) => string[];
  /** Labels to set (merged over the base's `config.Labels`). */
  labels?: Record<string, string>;
}

/** RFC 3339 UTC time for `sec` seconds since the epoch, without fractional seconds. */
export function rfc3339(sec: number): string {
  return new Date(sec * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * Return `env` with `lib` first in LD_PRELOAD. An existing LD_PRELOAD is kept
 * (its entries follow ours, colon-separated); `lib` is not added twice. ld.so
 * accepts both ':' and ' ' as separators (ld.so(8)), so both are recognized
 * when looking for an existing `lib`. Later duplicate LD_PRELOAD entries are
 * folded into the first, as the last one would otherwise win.
 *
 * @param env "KEY=value" strings (image config `Env`)
 * @param lib absolute path of the preloaded library
 */
export function withLdPreload(env: string[], lib: string): string[] {
  const out: string[] = [];
  let existing: string[] | undefined;
  let at = -1;
  for (const e of env) {
    if (e.startsWith('LD_PRELOAD=')) {
      const parts = e.slice('LD_PRELOAD='.length).split(/[: ]+/).filter((p) => p !== '');
      if (existing === undefined) {
        existing = parts;
        at = out.length;
        out.push('');
      } else {
        existing = parts; // the engine uses the last definition
      }
      continue;
    }
    out.push(e);
  }
  const list = [lib, ...(existing ?? []).filter((p) => p !== lib)];
  const value = `LD_PRELOAD=${list.join(':')}`;
  if (at >= 0) out[at] = value;
  else out.push(value);
  return out;
}

/**
 * Append layers to `base` and patch its config.
 *
 * The new config is the base config with: `rootfs.diff_ids` extended by each
 * layer's diffID; one history entry per layer appended; `created`, `Env` and
 * `Labels` patched as asked; everything else kept. It is serialized with
 * canonicalJson (sorted keys), so equal inputs give equal config digests.
 *
 * @returns a new Image; `base` is not modified
 * @throws VriftError (when the result is first used) if the base config is unreadable
 */
export function appendLayers(base: Image, adds: Addendum[], patch: ConfigPatch = {}): Image {
  let built: Promise<Image> | undefined;
  const get = () =>
    (built ??= (async () => {
      const raw = await base.rawConfig();
      const config = JSON.parse(raw.toString('utf8')) as ImageConfig; // a deep copy
      const baseLayers = await base.layers();
      if (config.rootfs.diff_ids.length !== baseLayers.length) {
        throw new VriftError(`appending layers: base config lists ${config.rootfs.diff_ids.length} diff_ids but the image has ${baseLayers.length} layers`);
      }
      for (const a of adds) config.rootfs.diff_ids.push(await a.layer.diffID());
      if (adds.length > 0) {
        config.history = [...(config.history ?? [])];
        for (const a of adds) {
          const h: HistoryEntry = { ...a.history };
          if (h.created === undefined && patch.created !== undefined) h.created = patch.created;
          config.history.push(h);
        }
      }
      if (patch.created !== undefined) config.created = patch.created;
      if (patch.env || patch.labels) {
        config.config = { ...(config.config ?? {}) };
        if (patch.env) config.config.Env = patch.env(config.config.Env ?? []);
        if (patch.labels) config.config.Labels = { ...(config.config.Labels ?? {}), ...patch.labels };
      }
      const rawNew = canonicalJsonBytes(config);
      return imageFromParts(rawNew, config, [...baseLayers, ...adds.map((a) => a.layer)]);
    })());
  return {
    manifest: async () => (await get()).manifest(),
    rawManifest: async () => (await get()).rawManifest(),
    config: async () => (await get()).config(),
    rawConfig: async () => (await get()).rawConfig(),
    layers: async () => (await get()).layers(),
  };
}
