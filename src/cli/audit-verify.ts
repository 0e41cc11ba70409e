/**
 * `bastion audit verify` of one audit log, and of the logs of several cluster nodes at once
 * (issue 12: one chain per node, each record naming its node). Owns: reading one data
 * directory's chain into a verdict with the node id it names, the one-line summary, and
 * the per-node report and exit code of a multi-node verify. Must not: judge records
 * itself (security/audit/verify.ts does) or write to any audit database.
 *
 * A chain's node id is the `node` of its newest record (a cluster node's writer puts it in
 * every record, under the hash); a chain whose oldest record names another node gets a
 * warning (the data directory changed hands, or the node id changed). A single broker's
 * records name no node: its chain is named by its data directory alone.
 *
 * SECURITY: two data directories whose chains name the same node id fail the multi-node
 * verify: one node has one chain, so a copy (or a replayed older chain) beside the real
 * one is not silently counted twice.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import type { AuditVerifyResult } from '../security/audit/verify.js';
import { verifyChain, type ChainReport } from '../server/audit/verify-chain.js';

export { verifyChain };

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

/** The line `verify` prints for an intact log. */
export function intactLine(result: AuditVerifyResult): string {
  const signed = result.lastSignedSeq > 0 ? `last signed at seq ${result.lastSignedSeq}` : 'none signed yet';
  const algorithms = result.algorithms.length > 0 ? `; signatures: ${result.algorithms.join(', ')}` : '';
  const p = result.pruned;
  const prunedText = p === null ? '' : `; ${p.throughSeq === 1 ? 'record 1' : `records 1 to ${p.throughSeq}`} pruned at ${new Date(p.prunedAt).toISOString()} by retention (the newest of them from ${new Date(p.headTs).toISOString()})`;
  return `audit log intact: ${plural(result.records, 'record')}, ${plural(result.checkpoints, 'checkpoint')}, ${signed}${prunedText}${algorithms}`;
}

/** The data directories under `dir` that hold an audit log (a cluster's node data directories, e.g. `<dataDir>/workers`). */
export function nodeDataDirs(dir: string): string[] {
  const root = resolve(process.cwd(), dir);
  let names: string[];
  try {
    names = readdirSync(root).sort();
  } catch (err) {
    throw new BastionError('ERR_USAGE', `--nodes ${dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
  }
  const found = names.map((n) => join(root, n)).filter((d) => statSync(d, { throwIfNoEntry: false })?.isDirectory() === true && existsSync(join(d, 'audit.db')));
  if (found.length === 0) throw new BastionError('ERR_USAGE', `--nodes ${dir}: no directory in it holds an audit log (audit.db)`);
  return found;
}

/** How a chain is named in the report: its node id and where it is. */
function label(r: { node: string | null; dataDir: string }): string {
  return r.node !== null ? `node ${r.node} (${r.dataDir})` : `data directory ${r.dataDir} (no node id)`;
}

/** One chain's outcome: its report (null: it could not be read) and its problem (null: intact). */
interface Verdict {
  dataDir: string;
  report: ChainReport | null;
  problem: string | null;
}

/**
 * Verifies the chains of several data directories, each on its own: prints one line per
 * chain (its node id first) and a summary; exit code 1 when any chain fails, or two name
 * the same node.
 */
export async function verifyNodes(dataDirs: readonly string[], opts: { json: boolean; strict: boolean }): Promise<void> {
  const verdicts: Verdict[] = [];
  for (const dataDir of dataDirs) {
    try {
      const report = await verifyChain(dataDir, opts.strict);
      verdicts.push({ dataDir, report, problem: report.result.problem?.message ?? null });
    } catch (err) {
      if (!(err instanceof BastionError)) throw err;
      verdicts.push({ dataDir, report: null, problem: err.message });
    }
  }
  // One node, one chain.
  const byNode = new Map<string, string[]>();
  for (const v of verdicts) {
    const node = v.report?.node ?? null;
    if (node !== null) byNode.set(node, [...(byNode.get(node) ?? []), v.report!.dataDir]);
  }
  const duplicates = [...byNode].filter(([, dirs]) => dirs.length > 1).map(([node, dirs]) => `node id ${node} names the chains of ${dirs.length} data directories: ${dirs.join(', ')}`);
  const failed = verdicts.filter((v) => v.problem !== null).length;
  const ok = failed === 0 && duplicates.length === 0;
  if (opts.json) {
    const chains = verdicts.map((v) => (v.report !== null ? { node: v.report.node, dataDir: v.report.dataDir, ...v.report.result, trustAnchor: v.report.trustAnchor } : { node: null, dataDir: v.dataDir, ok: false, problem: { message: v.problem } }));
    process.stdout.write(`${JSON.stringify({ ok, chains, duplicates })}\n`);
    if (!ok) process.exitCode = 1;
    return;
  }
  for (const v of verdicts) {
    const name = label(v.report ?? { node: null, dataDir: v.dataDir });
    if (v.report !== null) {
      for (const w of v.report.result.warnings) process.stderr.write(`bastion: warning: ${name}: ${w}\n`);
      if (v.report.earlierNode !== null) process.stderr.write(`bastion: warning: ${name}: its oldest record names node ${v.report.earlierNode}\n`);
    }
    if (v.problem !== null) process.stderr.write(`bastion: ${name}: ${v.problem}\n`);
    else if (v.report !== null) process.stdout.write(`${name}: ${intactLine(v.report.result)}\n`);
  }
  for (const d of duplicates) process.stderr.write(`bastion: ${d}\n`);
  if (ok) {
    process.stdout.write(`${plural(verdicts.length, 'audit log')} intact\n`);
    return;
  }
  throw new BastionError('ERR_AUDIT_TAMPERED', `${failed > 0 ? `${failed} of ${plural(verdicts.length, 'audit log')} failed verification` : 'every audit log verified'}${duplicates.length > 0 ? `; ${plural(duplicates.length, 'node id')} named by several chains` : ''}`);
}
