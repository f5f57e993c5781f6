// Reads the conformance runner's results (checks.json per scenario) and fails if any scenario that applies to
// this server ended with a check other than SUCCESS or INFO: the runner itself fails only on FAILURE, and a
// WARNING (a SHOULD not met) counts as not passing here.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, expectedFile] = process.argv.slice(2);
const notApplicable = new Set(
  readFileSync(expectedFile, 'utf8')
    .split('\n')
    .map((line) => line.match(/^\s*-\s*(\S+)/)?.[1])
    .filter(Boolean),
);
let passed = 0;
let failed = 0;
let skipped = 0;
for (const entry of readdirSync(dir).sort()) {
  const scenario = entry.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT.*$/, '');
  if (notApplicable.has(scenario)) {
    skipped++;
    continue;
  }
  const checks = JSON.parse(readFileSync(join(dir, entry, 'checks.json'), 'utf8'));
  const bad = checks.filter((c) => c.status !== 'SUCCESS' && c.status !== 'INFO');
  const good = checks.filter((c) => c.status === 'SUCCESS').length;
  if (bad.length > 0 || good === 0) {
    failed++;
    console.log(`FAIL ${scenario}: ${bad.map((c) => `${c.id} ${c.status} ${c.errorMessage ?? ''}`).join('; ') || 'no check passed'}`);
  } else {
    passed++;
    console.log(`ok   ${scenario} (${good} checks)`);
  }
}
console.log(`conformance: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
