/**
 * Temp paths to remove if the process is interrupted (SIGINT, SIGTERM,
 * SIGHUP), so an interrupted build leaves no partial archive or work
 * directory behind. Normal and error paths remove their temp files
 * themselves; this only covers signals.
 */
import { rmSync } from 'node:fs';

const paths = new Set<string>();
let installed = false;

function onSignal(sig: NodeJS.Signals): void {
  for (const p of paths) {
    try {
      rmSync(p, { recursive: true, force: true });
    } catch {
      // best effort: the process is exiting
    }
  }
  paths.clear();
  process.removeListener(sig, onSignal);
  process.kill(process.pid, sig); // default action: exit with the signal
}

/**
 * Remove `p` (file or directory) if a termination signal arrives before
 * the returned function is called.
 * @returns unregister: call it once `p` is renamed away or removed
 */
export function removeOnSignal(p: string): () => void {
  if (!installed) {
    installed = true;
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, onSignal);
  }
  paths.add(p);
  return () => {
    paths.delete(p);
  };
}
