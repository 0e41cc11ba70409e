/**
 * How to write the `bastion` command in the hints the CLI prints (start banner, next
 * steps), so a printed line works when pasted. Owns: that one decision.
 *
 * Installed as a package (`npm install -g`, `npx`, a project's node_modules/.bin) the
 * command is `bastion`: npm starts it through a bin link named `bastion` (argv[1] keeps
 * the link's path, Node does not resolve it), and on platforms with command shims
 * instead of links the real file sits under a node_modules folder. Anything else is a
 * checkout run as `node dist/src/cli/main.js` (by hand or by `npm start`), where
 * `bastion` is not on PATH, so the hint names node and the script the way it was run.
 */
import { realpathSync } from 'node:fs';
import { basename, relative, sep } from 'node:path';

export function cliName(entry: string | undefined = process.argv[1], cwd: string = process.cwd()): string {
  if (entry === undefined) return 'bastion';
  const name = basename(entry).replace(/\.(cmd|exe|ps1)$/i, '');
  if (name === 'bastion') return 'bastion';
  let real = entry;
  try {
    real = realpathSync(entry);
  } catch {
    // A path that vanished: judge it as given.
  }
  if (real.split(sep).includes('node_modules')) return 'bastion';
  const rel = relative(cwd, entry);
  return `node ${rel.startsWith('..') || rel === '' ? entry : rel}`;
}
