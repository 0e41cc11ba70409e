/**
 * `bastion defender …`: `audit`, the offline security audit of a data directory and its
 * config, here; `alerts` and `release` (defender-alerts.ts) and `rules` (defender-rules.ts)
 * registered here (docs/DEFENDER.md). Owns: the commands' options and the audit's output
 * and exit code. Must not: decide findings (src/defender/audit/) or change anything the
 * audit reads.
 *
 * Exit codes: 0 no finding at or above --fail-on; 1 some; 2 bad input (a bad flag, an
 * unreadable config or data directory), so a script can tell "findings" from "could not audit".
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Severity } from '../defender/audit/finding.js';
import type { AlertsOptions } from './defender-alerts.js';
import { badInput, type SourceOptions } from './defender-source.js';
import type { RulesOptions } from './defender-rules.js';

interface AuditOptions {
  json?: boolean;
  failOn: Severity;
  config?: string;
  dataDir?: string;
}

/** --limit: a whole number from 1 to 1000 (commander turns the throw into one line and exit 2). */
function parseLimit(raw: string): number {
  if (!/^[0-9]{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000) throw new InvalidArgumentError('expected a whole number from 1 to 1000');
  return Number(raw);
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
  const defender = program.command('defender').description('security audit of the fleet, behaviour alerts, releases and detection rules');
  defender
    .command('audit')
    .description('check certificates, listeners, rules and claims for security problems; exit 1 on a finding at or above --fail-on')
    .option('--json', 'JSON report: {findings, counts, checkedAt}')
    .addOption(new Option('--fail-on <severity>', 'exit 1 when a finding is at or above this severity').choices(['low', 'medium', 'high', 'critical']).default('high'))
    .option('-c, --config <file>', "the broker's YAML config (its listeners, limits, rules, dataDir and pki.dir)")
    .option('--data-dir <dir>', 'data directory (default: the config dataDir, else ./bastion-data); without -c the zero-config broker is audited')
    .action(async (opts: AuditOptions) => audit(opts));
  defender
    .command('alerts')
    .description('list behaviour alerts in <data-dir>/defender.db, newest first (works alongside a running broker)')
    .addOption(new Option('--state <state>', 'only alerts in this state').choices(['active', 'cleared', 'released']))
    .option('--identity <id>', 'only alerts of this identity')
    .option('--rule <name>', 'only alerts of this rule')
    .option('--limit <n>', 'at most this many alerts (1 to 1000)', parseLimit, 100)
    .option('--json', 'JSON: {total, alerts}')
    .option('-c, --config <file>', "the broker's YAML config (its dataDir)")
    .option('--data-dir <dir>', 'data directory (default: the config dataDir, else ./bastion-data)')
    .action(async (opts: AlertsOptions) => (await import('./defender-alerts.js')).listAlertsCommand(opts));
  defender
    .command('release')
    .description("lift an identity's quarantine, throttle and ban and mark its active alerts released; exit 1 when there was nothing to release")
    .argument('<identity>', 'the identity (certificate CN, user name) the alerts name')
    .option('-c, --config <file>', "the broker's YAML config (its dataDir)")
    .option('--data-dir <dir>', 'data directory (default: the config dataDir, else ./bastion-data)')
    .action(async (identity: string, opts: SourceOptions) => (await import('./defender-alerts.js')).releaseCommand(identity, opts));
  defender
    .command('rules')
    .description('the detection rules in effect (the config\'s defender.detect, else the built-in ones) and the actions each takes')
    .option('--json', 'JSON: {enabled, dryRun, windowSeconds, rules, actions}')
    .option('-c, --config <file>', "the broker's YAML config (its defender.detect section)")
    .action(async (opts: RulesOptions) => (await import('./defender-rules.js')).rulesCommand(opts));
}
