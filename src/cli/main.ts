import { setFlagsFromString } from 'node:v8';
import yargs from 'yargs';
import { VriftError, EXIT } from '../errors';
import { hasReplacementChar, oneLineUsage } from './args';
import { blobCommand } from './commands/blob';
import { shimPathCommand } from './commands/shimPath';
import { buildCommand } from './commands/build';
import { layerCommand } from './commands/layer';
import { inspectCommand } from './commands/inspect';
import { verifyCommand } from './commands/verify';

/**
 * Entry point of the `vrift` CLI.
 *
 * JSON results go to stdout, logs to stderr. Exit codes: see EXIT in
 * src/errors.ts and README.md.
 *
 * @param argv arguments after the node binary and script (process.argv.slice(2))
 */
export async function main(argv: string[]): Promise<void> {
  // Peak memory: `vrift build` holds O(entries) data per phase (plan, blob
  // entries, blob); V8 lets the old generation grow up to ~4x the live size
  // between full collections, and that slack scaled peak RSS with the tree.
  // A 1.5x growth factor (V8 reads the flag at every GC) cut peak RSS at 80k
  // files from ~476 to ~398 MiB for the same wall time (bench/builder.mjs).
  setFlagsFromString('--heap-growing-percent=50');
  try {
    // Node has already turned bytes that are not UTF-8 into U+FFFD: a path
    // given so would silently name another file (vrift blob -o $'x\xff' wrote "x\uFFFD").
    const lossy = argv.find(hasReplacementChar);
    if (lossy !== undefined) {
      throw new VriftError(`parsing arguments: ${JSON.stringify(lossy)} holds bytes that are not UTF-8 (shown as \uFFFD), which a command line read by Node cannot pass intact; use a UTF-8 name (an existing directory can be given through a symlink with one)`, { exitCode: EXIT.usage });
    }
    await yargs(argv)
      .scriptName('vrift')
      .strict()
      .demandCommand(1, 'Say which command to run; see `vrift --help`.')
      .parserConfiguration({ 'boolean-negation': false })
      .command(buildCommand)
      .command(blobCommand)
      .command(shimPathCommand)
      .command(layerCommand)
      .command(inspectCommand)
      .command(verifyCommand)
      .fail((msg, err) => {
        // yargs' own parse errors (e.g. "Not enough arguments following: output") are YErrors: usage
        if (err && err.name === 'YError') throw new VriftError(oneLineUsage(err.message), { exitCode: EXIT.usage });
        if (err) throw err;
        throw new VriftError(oneLineUsage(msg), { exitCode: EXIT.usage });
      })
      .example('$0 build --base vrift-test/bookworm-python:latest --add ./site-packages:/vrift/python --tag app:1 --load', 'Build an image with a /vrift tree')
      .example('$0 inspect docker-daemon:app:1', 'What vrift put into an image')
      .example('$0 <command> --help', 'Options and examples of one command')
      .epilogue('Exit codes: 0 success, 1 failure (bad input, I/O), 2 usage error, 3 `vrift verify` found a mismatch.')
      .help()
      .version()
      .parseAsync();
  } catch (err) {
    const code = err instanceof VriftError ? err.exitCode : EXIT.failure;
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`vrift: ${message}\n`);
    if (process.env.VRIFT_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = code;
  }
}
