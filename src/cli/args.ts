import { VriftError, EXIT } from '../errors';

// Checks shared by the yargs commands (usage errors, exit 2).

/**
 * Single-valued options given twice arrive from yargs as arrays
 * (`--output a.tar --output b.tar` -> ["a.tar", "b.tar"]), and an option
 * written without a value arrives as "" (`--output ''`, or `--output` right
 * before another flag for options without requiresArg). Both are refused here,
 * before any work, instead of failing late with a raw Node error.
 *
 * @param a parsed arguments (kebab-case keys)
 * @param names option names (without --) that take exactly one non-empty value
 * @throws VriftError (exit 2) naming the option
 */
export function checkSingleValues(a: Record<string, unknown>, names: readonly string[]): void {
  for (const name of names) {
    const v = a[name];
    if (Array.isArray(v)) {
      throw new VriftError(`parsing --${name}: given ${v.length} times (${v.map((x) => JSON.stringify(String(x))).join(', ')}); give it once`, { exitCode: EXIT.usage });
    }
    if (v === '') throw new VriftError(`parsing --${name}: the value is empty; give one after --${name}`, { exitCode: EXIT.usage });
  }
}

/**
 * Node decodes command-line arguments as UTF-8 and turns every byte sequence
 * that is not UTF-8 into U+FFFD, irreversibly: a path given with such bytes
 * cannot be used as given.
 *
 * @returns whether `s` holds U+FFFD (the replacement character)
 */
export function hasReplacementChar(s: string): boolean {
  return s.includes('\uFFFD');
}

/**
 * Turn a yargs failure message into the one line the CLI prints: yargs writes
 * "Invalid values:" followed by one indented "Argument: x, Given: ..., Choices:
 * ..." line per option; every other message is collapsed onto one line.
 *
 * @param msg yargs' message (may span lines)
 * @returns a single line without a trailing newline
 */
export function oneLineUsage(msg: string): string {
  const lines = msg.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (lines[0] === 'Invalid values:' && lines.length > 1) {
    return lines
      .slice(1)
      .map((l) => {
        const m = /^Argument: (\S+), Given: (.*), Choices: (.*)$/.exec(l);
        return m ? `parsing --${m[1]} ${m[2]}: not one of ${m[3]}; choose one of them` : l;
      })
      .join('; ');
  }
  return lines.join(' ');
}
