/**
 * Configuration audit checks: logging off, plaintext or anonymous listeners, mTLS without
 * revocation, stale CRLs, the root key online, limits off, the allow-all policy. Owns:
 * those checks, their severities and fixes. Must not: decide a listener's revocation
 * source (transport/tls-revocation.ts and server/listener-lint.ts do; the loader passes
 * their verdict in) or read files.
 */
import type { AuditInput } from './audit-input.js';
import type { Finding } from './finding.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function loggingFindings(input: AuditInput): Finding[] {
  // audit.db is always written (audit-config.ts has no switch for it); what can be turned
  // off is the operational log, where refusals and failures are explained.
  if (input.config.log.level !== 'silent') return [];
  return [{ check: 'logging-disabled', severity: 'low', subject: 'log.level', message: 'the operational log is off (log.level: silent): refusals and failures leave no explanation outside audit.db', fix: 'set log.level: info (with log.format: json for a collector)' }];
}

function listenerFindings(input: AuditInput): Finding[] {
  const out: Finding[] = [];
  for (const l of input.config.listeners) {
    const loopback = LOOPBACK.has(l.host);
    if (l.protocol === 'mqtt' || l.protocol === 'ws') {
      out.push({
        check: 'plaintext-listener',
        // On loopback only local processes can read the traffic; anywhere else the network can.
        severity: loopback ? 'medium' : 'high',
        subject: l.name,
        message: `listener ${l.name} (${l.protocol} on ${l.host}:${l.port}) carries credentials and messages in clear text`,
        fix: `change it to protocol: ${l.protocol === 'mqtt' ? 'mqtts' : 'wss'} with tls.cert and tls.key, and remove insecure: true`,
      });
    }
    if (l.allowAnonymous) {
      out.push({
        check: 'anonymous-listener',
        severity: loopback ? 'medium' : 'high',
        subject: l.name,
        message: `listener ${l.name} (${l.host}:${l.port}) accepts clients that present no identity (allowAnonymous: true)`,
        fix: 'remove allowAnonymous: true and give each client a certificate (`bastion cert issue NAME`) or a user (`bastion user add`)',
      });
    }
  }
  for (const name of input.listenersWithoutRevocation) {
    out.push({
      check: 'mtls-listener-no-revocation',
      severity: 'high',
      subject: name,
      message: `listener ${name} accepts client certificates but nothing can revoke them`,
      fix: `set tls.crl on listener ${name} (or trust the built-in PKI's root, whose crl.pem is then used), or write tls.revocation: none if that is deliberate`,
    });
  }
  return out;
}

function crlFindings(input: AuditInput): Finding[] {
  const out: Finding[] = [];
  const now = input.now.getTime();
  const stale = (dates: readonly Date[]): Date | undefined => dates.find((d) => d.getTime() < now);
  const pki = input.pki;
  if (pki !== undefined) {
    const past = stale(pki.crlNextUpdates);
    if (past !== undefined) {
      out.push({
        check: 'crl-stale',
        severity: 'high',
        subject: `${pki.dir}/crl.pem`,
        message: `a CRL of the built-in PKI was due for renewal at ${past.toISOString()}: verifiers that enforce nextUpdate refuse every client`,
        fix: 're-sign it with `bastion crl` (or set pki.manageCrl: true so the broker re-signs it as it ages)',
      });
    }
  }
  for (const f of input.crlFiles) {
    if (pki !== undefined && f.path === `${pki.dir}/crl.pem`) continue;
    if (f.nextUpdates === null) {
      out.push({ check: 'crl-unreadable', severity: 'high', subject: f.listener, message: `listener ${f.listener}: its tls.crl ${f.path} cannot be read or parsed`, fix: `replace ${f.path} with the current CRL of the issuing CA (PEM)` });
      continue;
    }
    const past = stale(f.nextUpdates);
    if (past !== undefined) {
      out.push({ check: 'crl-stale', severity: 'high', subject: f.listener, message: `listener ${f.listener}: its tls.crl ${f.path} was due for renewal at ${past.toISOString()}`, fix: `fetch a current CRL from its CA into ${f.path}` });
    }
  }
  return out;
}

function rootKeyFindings(input: AuditInput): Finding[] {
  if (input.pki?.rootKeyOnline !== true) return [];
  // Low by design: the zero-config PKI keeps root.key so the broker can re-sign the root's
  // CRL and create intermediates without a ceremony; the intermediate issues every leaf, so
  // the root key is not used day to day. A production PKI should take it offline.
  return [
    {
      check: 'root-key-online',
      severity: 'low',
      subject: `${input.pki.dir}/root.key`,
      message: 'the root CA key sits next to the broker: whoever reads this directory can mint a new intermediate',
      fix: 'move it offline with `bastion ca export-root --out DIR` (bring it back with --root-key FILE when needed)',
    },
  ];
}

function limitsFindings(input: AuditInput): Finding[] {
  if (input.config.limits.enabled) return [];
  return [{ check: 'limits-disabled', severity: 'high', subject: 'limits.enabled', message: 'every abuse limit is off (limits.enabled: false): connection floods, auth-failure guessing and publish floods are unchecked', fix: 'remove limits.enabled: false (tune the single limits instead)' }];
}

function policyFindings(input: AuditInput): Finding[] {
  if (input.config.authz?.policy !== 'allow-all-INSECURE') return [];
  return [{ check: 'authz-allow-all', severity: 'critical', subject: 'authz.policy', message: 'authz.policy: allow-all-INSECURE lets every client publish and subscribe to every topic', fix: 'remove it and write roles and bindings (`bastion acl`), or rely on the default device policy' }];
}

export function configurationFindings(input: AuditInput): Finding[] {
  return [...loggingFindings(input), ...listenerFindings(input), ...crlFindings(input), ...rootKeyFindings(input), ...limitsFindings(input), ...policyFindings(input)];
}
