import type { CommandModule } from 'yargs';

// Owned by the shim work (issue 2): prints the built libvrift.so for this machine.
export const shimPathCommand: CommandModule = {
  command: 'shim-path',
  describe: 'Print the path of the built shim (libvrift.so) for this machine',
  builder: (y) => y,
  handler: async () => {
    throw new Error('not implemented yet');
  },
};
