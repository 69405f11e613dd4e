import type { Argv, CommandModule } from 'yargs';
import { dockerClient } from '../../image/daemon';
import { parseSourceRef } from '../../image/source';
import { formatInspect, inspectImage } from '../../verify/inspect';

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
        describe: 'docker-archive:<file>[:<name:tag>], oci:<dir-or-tar>[:<ref>], docker-daemon:<ref>, or a bare <ref> (= local engine)',
      })
      .option('json', { type: 'boolean', default: false, describe: 'Print the report as JSON on stdout' })
      .example('$0 inspect docker-daemon:app:1', 'Table for an image in the local engine')
      .example('$0 inspect docker-archive:app.tar --json | jq .dedup', 'JSON report of a `vrift build --output` archive')
      .example('$0 inspect oci:./layout:app', 'An OCI image layout directory or tar') as unknown as Argv<InspectArgs>,
  handler: async (a) => {
    const src = await parseSourceRef(a.image);
    try {
      const r = await inspectImage(src, dockerClient);
      process.stdout.write(a.json ? `${JSON.stringify(r, null, 2)}\n` : formatInspect(r));
    } catch (err) {
      if (a.json) process.stdout.write(`${JSON.stringify({ outcome: 'error', message: err instanceof Error ? err.message : String(err) })}\n`);
      throw err;
    }
  },
};
