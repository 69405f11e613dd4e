import type { Argv, CommandModule } from 'yargs';
import { VriftError } from '../../errors';
import { dockerClient } from '../../image/daemon';
import { parseSourceRef } from '../../image/source';
import { blobProblemError, formatInspect, inspectImage } from '../../verify/inspect';

/** Parsed arguments of `vrift inspect`. */
export interface InspectArgs {
  image: string;
  json: boolean;
}

/**
 * `vrift inspect <image>`: the vrift layers, domain, entry count, blob digest
 * (checked against the dev.vrift.blob.digest label), dedup ratio and shim
 * variant of an image, read from the image itself.
 */
export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <image>',
  describe: 'Show the vrift layers, PSFS blob, dedup ratio and shim of an image',
  builder: (y: Argv) =>
    y
      .positional('image', {
        type: 'string',
        demandOption: true,
        describe: 'docker-archive:<file>[:<name:tag>], oci:<dir-or-tar>[:<ref>], docker-daemon:<ref>, docker://<ref> (registry), or a plain <ref>: a registry when its first component is a host (has "." or ":" or is localhost), else the local engine',
      })
      .option('json', { type: 'boolean', default: false, describe: 'Print the report as JSON on stdout' })
      .example('$0 inspect docker-daemon:app:1', 'Table for an image in the local engine')
      .example('$0 inspect docker-archive:app.tar --json | jq .dedup', 'JSON report of a `vrift build --output` archive')
      .example('$0 inspect oci:./layout:app', 'An OCI image layout directory or tar')
      .example('$0 inspect 127.0.0.1:5000/app:1', 'An image in a registry') as unknown as Argv<InspectArgs>,
  handler: async (a) => {
    let r;
    try {
      const src = await parseSourceRef(a.image);
      r = await inspectImage(src, dockerClient);
    } catch (e) {
      const err = asInspectError(e);
      if (a.json) process.stdout.write(`${JSON.stringify({ outcome: 'error', message: err instanceof Error ? err.message : String(err) })}\n`);
      throw err;
    }
    process.stdout.write(a.json ? `${JSON.stringify(r, null, 2)}\n` : formatInspect(r));
    // A blob that does not decode is in the report (blob.problem); the exit status says so too.
    const bad = blobProblemError(r);
    if (bad) throw bad;
  },
};

/**
 * The image readers (src/image/source.ts, daemon.ts, remote.ts) word their
 * errors for `vrift build --base`; `vrift inspect` has no base and no --base
 * flag, so those words are replaced ("reading base image x: ..." -> "reading
 * image x: ...", "parsing --base x" -> "parsing image x").
 *
 * @param err what the readers threw
 * @returns a VriftError with the same exit code and the original as cause, or err unchanged
 */
export function asInspectError(err: unknown): unknown {
  if (!(err instanceof VriftError)) return err;
  const message = err.message
    .replace(/^reading base image /, 'reading image ')
    .replace(/^parsing --base /, 'parsing image ')
    .replace('. A plain --base reference without a registry host', '. A plain reference without a registry host');
  return message === err.message ? err : new VriftError(message, { cause: err, exitCode: err.exitCode });
}
