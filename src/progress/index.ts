/**
 * Progress of the byte-heavy phases of `vrift build` (hashing the tree,
 * compressing the layer, uploading when pushing), on stderr:
 *
 * - `bar`: cli-progress bars with bytes done / total and bytes per second,
 *   for a terminal (stderr is a TTY);
 * - `lines`: plain lines for logs and CI (stderr not a TTY, or `--json`):
 *   a line every LINE_INTERVAL_S seconds while a phase runs, and one when it
 *   ends, e.g. `hashing: 1.2 GiB in 3.40 s (361.4 MiB/s)`;
 * - `none`: nothing (`--quiet`).
 *
 * Callers report bytes as they go (`add`); nothing here uses timers, so a
 * phase that stops reporting costs nothing.
 */
import { Presets, SingleBar } from 'cli-progress';

/** One running phase. Bytes are uncompressed input bytes unless the phase says otherwise. */
export interface Phase {
  /** `n` more bytes done. */
  add(n: number): void;
  /** The phase is over (prints the closing line or completes the bar). */
  end(): void;
}

/** Starts phases. */
export interface Progress {
  /**
   * @param name what is done, e.g. "hashing", "compressing", "uploading"
   * @param total expected bytes (0 when unknown; the bar then shows bytes only)
   */
  phase(name: string, total: number): Phase;
}

/** How progress is shown. */
export type ProgressMode = 'bar' | 'lines' | 'none';

/** Seconds between two plain progress lines of one phase. */
export const LINE_INTERVAL_S = 10;

/** Bytes for people: B, KiB, MiB, GiB, TiB with one decimal. */
export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${u[i]}`;
}

/** A Progress that shows nothing. */
export const NO_PROGRESS: Progress = { phase: () => ({ add: () => undefined, end: () => undefined }) };

/**
 * The mode the CLI uses: none with --quiet, lines with --json or when stderr is not a terminal, else bars.
 */
export function progressMode(o: { quiet?: boolean; json?: boolean }, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (o.quiet) return 'none';
  if (o.json || !stream.isTTY) return 'lines';
  return 'bar';
}

/**
 * Make a Progress.
 * @param mode see ProgressMode
 * @param stream where bars and lines go (default process.stderr)
 * @param prefix put before plain lines (default "vrift: ")
 */
export function makeProgress(mode: ProgressMode, stream: NodeJS.WriteStream = process.stderr, prefix = 'vrift: '): Progress {
  if (mode === 'none') return NO_PROGRESS;
  return {
    phase(name: string, total: number): Phase {
      const t0 = process.hrtime.bigint();
      let done = 0;
      let ended = false;
      const secs = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
      const rate = (): string => `${humanBytes(Math.round(done / Math.max(secs(), 1e-3)))}/s`;
      if (mode === 'lines') {
        let next = LINE_INTERVAL_S;
        return {
          add(n: number) {
            done += n;
            const s = secs();
            if (s >= next) {
              next = s + LINE_INTERVAL_S;
              const pct = total > 0 ? ` ${Math.min(100, Math.floor((100 * done) / total))}%,` : '';
              stream.write(`${prefix}${name}:${pct} ${humanBytes(done)}${total > 0 ? ` of ${humanBytes(total)}` : ''} (${rate()})\n`);
            }
          },
          end() {
            if (ended) return;
            ended = true;
            stream.write(`${prefix}${name}: ${humanBytes(done)} in ${secs().toFixed(2)} s (${rate()})\n`);
          },
        };
      }
      const bar = new SingleBar(
        {
          stream,
          format: `${name.padEnd(12)} [{bar}] {percentage}% | {doneH} / {totalH} | {rate}`,
          hideCursor: true,
          clearOnComplete: false,
          fps: 8,
          barsize: 30,
        },
        Presets.shades_classic,
      );
      const payload = () => ({ doneH: humanBytes(done), totalH: total > 0 ? humanBytes(total) : '?', rate: rate() });
      bar.start(Math.max(total, 1), 0, payload());
      return {
        add(n: number) {
          done += n;
          bar.update(Math.min(done, Math.max(total, 1)), payload());
        },
        end() {
          if (ended) return;
          ended = true;
          bar.update(Math.max(total, 1), payload());
          bar.stop();
        },
      };
    },
  };
}
