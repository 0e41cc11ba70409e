// Runs every compiled test file with Node's test runner.
// Why a script: the glob is resolved here so the command is the same on every shell,
// and `--test-concurrency` keeps the suite within the 2-core CI machine. The timeout is a
// guard against a hung file, not a speed check: CLI-heavy files (dozens of child processes)
// take ~45 s alone and more on a loaded machine.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function collect(dir, out) {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) collect(full, out);
    else if (name.endsWith('.test.js')) out.push(full);
  }
  return out;
}

const filter = process.argv.slice(2);
let files = collect('dist/test', []).sort();
if (filter.length > 0) files = files.filter((f) => filter.some((p) => f.includes(p)));
// Which runtime ran the suite: CI runs it once per supported Node.js line.
console.log(`# Node.js ${process.version}, OpenSSL ${process.versions.openssl}: ${files.length} test files`);
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=180000', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
