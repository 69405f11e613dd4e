/**
 * Short bounded libFuzzer pass in the test flow (issue 4, item 4): runs
 * scripts/fuzz.sh with FUZZ_SECONDS=20 (override with env FUZZ_SECONDS) for
 * each target - psfs_view_init on arbitrary bytes, psfs_resolve on arbitrary
 * paths, lookup/resolve on arbitrary body bytes - built with ASan + UBSan.
 * Any crash, sanitizer report, failed invariant or hang (> 10 s per input)
 * fails. Skipped when clang is not installed (libFuzzer needs it).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { REPO, run } from './helpers';

const hasClang = spawnSync('clang', ['--version']).status === 0;
const SECONDS_PER = Number(process.env.FUZZ_SECONDS ?? 20);
const TARGETS = ['fuzz_header', 'fuzz_resolve', 'fuzz_lookup'];

(hasClang ? test : test.skip)(`fuzz: ${TARGETS.join(', ')} for ${SECONDS_PER} s each, 0 crashes`, () => {
  const r = run('bash', [path.join(REPO, 'scripts/fuzz.sh')], { env: { FUZZ_SECONDS: String(SECONDS_PER) }, cwd: REPO, timeoutMs: (SECONDS_PER * TARGETS.length + 240) * 1000 });
  console.log(`scripts/fuzz.sh:\n${r.stdout}${r.stderr}`);
  expect({ timedOut: r.timedOut, status: r.status }).toEqual({ timedOut: false, status: 0 });
  for (const t of TARGETS) {
    const m = r.stdout.match(new RegExp(`^fuzz: ${t} execs=(\\d+) seconds=\\d+ result=ok$`, 'm'));
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(1000); // the target really ran
  }
}, (SECONDS_PER * TARGETS.length + 300) * 1000);
