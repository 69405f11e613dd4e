import type { CommandModule } from 'yargs';

// Owned by the image builder work (issue 3).
export const buildCommand: CommandModule = {
  command: 'build',
  describe: 'Build an image whose /vrift tree, shim and PSFS blob are layered onto a base image',
  builder: (y) => y,
  handler: async () => {
    throw new Error('not implemented yet');
  },
};
