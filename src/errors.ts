/**
 * One error type for everything vrift reports to a user.
 *
 * Messages follow one style: "verb-ing noun: cause", and end with what to do
 * when there is something to do. `cause` keeps the original error.
 */
export class VriftError extends Error {
  /** Process exit code the CLI uses for this error (see README "Exit codes"). */
  readonly exitCode: number;

  constructor(message: string, options: { cause?: unknown; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VriftError';
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Exit codes, documented in README.md. */
export const EXIT = {
  ok: 0,
  /** Generic failure (bad input, I/O error). */
  failure: 1,
  /** Usage error: unknown flag, missing argument. */
  usage: 2,
  /** `vrift verify` found a mismatch. */
  mismatch: 3,
} as const;
