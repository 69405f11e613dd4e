import type { CommandModule } from 'yargs';

// Owned by the blob work (issue 2): `vrift blob <dir> -o <file>`.
export const blobCommand: CommandModule = {
  command: 'blob <dir>',
  describe: 'Write the PSFS blob for an existing host tree whose domain root is <dir>',
  builder: (y) => y,
  handler: async () => {
    throw new Error('not implemented yet');
  },
};
