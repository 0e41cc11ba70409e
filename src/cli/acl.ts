/**
 * `bastion acl explain|lint` and the registration of `bastion acl role|rule|bind` (in
 * acl-store-cli.ts). Owns: reading the rule set a broker would use (its config file, or
 * the zero-config default, plus the rule store in its data dir) and printing answers.
 * Must not: evaluate rules itself (security/authz does).
 */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import type { PeerCertificate } from '../broker/channel/connection-port.js';
import { BastionError } from '../core/errors.js';
import type { QoS } from '../protocol/packets.js';
import { explain, formatExplanation, type Explanation } from '../security/authz/explain.js';
import { formatLint, lintPolicy, type LintFinding } from '../security/authz/lint.js';
import { addAdminClientOptions, adminClientFrom, wantsAdminApi, type AdminClientOptions } from './admin-client.js';
import { apiAclExplain, apiAclLint } from './admin-calls.js';
import { addPolicySourceOptions, effectivePolicy, type PolicySourceOptions } from './acl-policy-source.js';
import { registerAclStoreCommands } from './acl-store-cli.js';
import { listenerFindings } from '../server/listener-lint.js';
import { loadConfigFile } from '../server/load-config.js';

/** Lint of the rules a broker with these options would use, plus what its config's listeners lack (a way to revoke). */
async function localLint(opts: PolicySourceOptions): Promise<LintFinding[]> {
  const findings = lintPolicy(effectivePolicy(opts));
  if (opts.config === undefined) return findings;
  const { config, baseDir } = loadConfigFile(opts.config);
  return [...findings, ...(await listenerFindings(config, baseDir))];
}

function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

async function certificateFromFile(file: string): Promise<PeerCertificate> {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw usage(`cannot read certificate ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  // The X.509 libraries load only for --cert.
  const { describeCertificate } = await import('../pki/index.js');
  let info;
  try {
    info = describeCertificate(pem);
  } catch (err) {
    throw usage(`${file} is not a readable certificate: ${err instanceof Error ? err.message : String(err)}`);
  }
  return {
    commonName: info.commonName,
    serialNumber: info.serialNumber,
    fingerprint256: info.fingerprint256,
    issuer: info.issuer,
    subject: info.subject,
    organizationalUnits: [...info.organizationalUnits],
    sans: { dns: [...info.sans.dns], uri: [...info.sans.uri], ip: [...info.sans.ip], email: [...info.sans.email] },
  };
}

/**
 * The admin API options without `--cert` (which names the client certificate to explain
 * here), with the local target flags (an explicit one beats BASTION_ADMIN_URL) and the
 * --admin-cert/--admin-key names for errors.
 */
function adminOf(opts: AdminClientOptions & PolicySourceOptions): AdminClientOptions {
  return { adminUrl: opts.adminUrl, token: opts.token, adminCert: opts.adminCert, adminKey: opts.adminKey, cafile: opts.cafile, dataDir: opts.dataDir, config: opts.config, prefixed: true };
}

interface ExplainOptions extends PolicySourceOptions, Omit<AdminClientOptions, 'cert'> {
  clientId: string;
  cert?: string;
  username?: string;
  pskIdentity?: string;
  publish?: string;
  subscribe?: string;
  qos?: string;
  retain?: boolean;
  json?: boolean;
}

export function registerAclCommand(program: Command): void {
  const acl = program.command('acl').description('authorization: explain and lint the rules, manage roles, rules and bindings');
  // With --admin-url (or BASTION_ADMIN_URL) explain and lint ask a running broker's admin API.
  addAdminClientOptions(addPolicySourceOptions(
    acl
      .command('explain')
      .description('say whether a client may publish or subscribe, and which rule decided')
      .requiredOption('--client-id <id>', 'the client id')
      .option('--cert <file>', 'the client certificate (PEM): CN, OU, SANs and serial')
      .option('--username <name>', 'the authenticated user name')
      .option('--psk-identity <identity>', 'the TLS-PSK identity')
      .option('--publish <topic>', 'a topic to publish to')
      .option('--subscribe <filter>', 'a topic filter to subscribe to')
      .option('--qos <n>', 'QoS of the publish or the subscription')
      .option('--retain', 'a retained publish')
      .option('--json', 'print JSON'),
  ), { prefixed: true }).action(async (opts: ExplainOptions) => {
    if ((opts.publish === undefined) === (opts.subscribe === undefined)) throw usage('give exactly one of --publish TOPIC or --subscribe FILTER');
    if (opts.qos !== undefined && !/^[012]$/.test(opts.qos)) throw usage(`invalid --qos ${opts.qos} (0, 1 or 2)`);
    const certificate = opts.cert !== undefined ? await certificateFromFile(opts.cert) : undefined;
    if (wantsAdminApi(adminOf(opts))) {
      const answer = (await apiAclExplain(adminClientFrom(adminOf(opts)), {
        clientId: opts.clientId,
        ...(opts.username !== undefined ? { username: opts.username } : {}),
        ...(opts.pskIdentity !== undefined ? { pskIdentity: opts.pskIdentity } : {}),
        ...(certificate !== undefined ? { certificate: { commonName: certificate.commonName, organizationalUnits: certificate.organizationalUnits, serialNumber: certificate.serialNumber, sans: certificate.sans } } : {}),
        ...(opts.publish !== undefined ? { publish: opts.publish } : { subscribe: opts.subscribe ?? '' }),
        ...(opts.qos !== undefined ? { qos: Number(opts.qos) as QoS } : {}),
        ...(opts.retain === true ? { retain: true } : {}),
      })) as Explanation;
      process.stdout.write(opts.json === true ? `${JSON.stringify(answer)}\n` : formatExplanation(answer));
      return;
    }
    const result = explain(effectivePolicy(opts), {
      clientId: opts.clientId,
      ...(opts.username !== undefined ? { username: opts.username } : {}),
      ...(opts.pskIdentity !== undefined ? { pskIdentity: opts.pskIdentity } : {}),
      ...(certificate !== undefined ? { certificate } : {}),
      action: opts.publish !== undefined ? 'publish' : 'subscribe',
      topic: opts.publish ?? opts.subscribe ?? '',
      ...(opts.qos !== undefined ? { qos: Number(opts.qos) as QoS } : {}),
      ...(opts.retain === true ? { retain: true } : {}),
    });
    process.stdout.write(opts.json === true ? `${JSON.stringify(result)}\n` : formatExplanation(result));
  });
  addAdminClientOptions(addPolicySourceOptions(
    acl
      .command('lint')
      .description('flag rules that are too broad, can never match, or let one device reach another; exit 1 on errors')
      .option('--json', 'print JSON'),
  ), { prefixed: true }).action(async (opts: PolicySourceOptions & AdminClientOptions & { json?: boolean }) => {
    const findings = wantsAdminApi(adminOf(opts)) ? ((await apiAclLint(adminClientFrom(adminOf(opts)))) as LintFinding[]) : await localLint(opts);
    process.stdout.write(opts.json === true ? `${JSON.stringify({ findings })}\n` : formatLint(findings));
    if (findings.some((f) => f.severity === 'error')) process.exitCode = 1;
  });
  registerAclStoreCommands(acl);
}
