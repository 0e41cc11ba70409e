/**
 * `bastion defender audit`: the offline security audit of a data directory and its config
 * (docs/DEFENDER.md). Owns: the command's options, output and exit code. Must not: decide
 * findings (src/defender/audit/) or change anything it reads.
 *
 * Exit codes: 0 no finding at or above --fail-on; 1 some; 2 bad input (a bad flag, an
 * unreadable config or data directory), so a script can tell "findings" from "could not audit".
 */
import { Command, Option } from 'commander';
import { BastionError } from '../core/errors.js';
import type { Severity } from '../defender/audit/finding.js';

interface AuditOptions {
  json?: boolean;
  failOn: Severity;
  config?: string;
  dataDir?: string;
}

function badInput(err: unknown): never {
  const message = err instanceof BastionError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`bastion: ${message.split('\n')[0]}\n`);
  process.exit(2);
}

async function audit(opts: AuditOptions): Promise<void> {
  const { anyAtOrAbove, buildReport, formatReport, runAudit } = await import('../defender/audit/index.js');
  const { loadAuditInput } = await import('./defender-input.js');
  const now = new Date();
  let input;
  try {
    input = await loadAuditInput({ ...(opts.config !== undefined ? { config: opts.config } : {}), ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}) }, now);
  } catch (err) {
    badInput(err);
  }
  const report = buildReport(runAudit(input), now);
  process.stdout.write(opts.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  process.exitCode = anyAtOrAbove(report.findings, opts.failOn) ? 1 : 0;
}

export function registerDefenderCommand(program: Command): void {
  const defender = program.command('defender').description('security audit of the fleet (and, later, behaviour detection)');
  defender
    .command('audit')
    .description('check certificates, listeners, rules and claims for security problems; exit 1 on a finding at or above --fail-on')
    .option('--json', 'JSON report: {findings, counts, checkedAt}')
    .addOption(new Option('--fail-on <severity>', 'exit 1 when a finding is at or above this severity').choices(['low', 'medium', 'high', 'critical']).default('high'))
    .option('-c, --config <file>', "the broker's YAML config (its listeners, limits, rules, dataDir and pki.dir)")
    .option('--data-dir <dir>', 'data directory (default: the config dataDir, else ./bastion-data); without -c the zero-config broker is audited')
    .action(async (opts: AuditOptions) => audit(opts));
}
