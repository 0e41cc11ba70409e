/**
 * Audit records as Elastic Common Schema (ECS 8.x) documents: the one field mapping both
 * SIEM exports (JSON-lines file, syslog MSG) send. Owns: which ECS field each part of a
 * security event lands in, the event's categorization (event.kind/category/type/outcome)
 * and its syslog severity. Must not: do I/O, or add anything the record does not say
 * (the sinks serialize and ship the document as it is).
 *
 * ECS has no field for the audit chain or for MQTT; both go under our own `bastion.*`
 * namespace, as ECS allows for custom fields (`bastion.audit.*`, `bastion.mqtt.*`, ...).
 * Categorization follows the ECS allowed values: event.category ∈ {authentication, network,
 * iam, configuration, intrusion_detection, session}, event.type from the types each of
 * those categories expects.
 */
import type { CertificateSummary, SecurityEvent, TlsSummary } from '../../core/security-events.js';
import { formatIp, parseIp } from '../limits/ip-cidr.js';
import type { AuditRecord } from './record.js';

/** The ECS version the documents follow (`ecs.version`). */
export const ECS_VERSION = '8.11.0';

export type EcsValue = string | number | boolean | null | EcsValue[] | EcsObject;
export interface EcsObject {
  [key: string]: EcsValue;
}

/** Where the document comes from (`observer.*`, `service.*`). */
export interface EcsOrigin {
  /** observer.name and host.hostname: this broker's host name (absent: left out). */
  hostname?: string;
  /** service.node.name: the broker node id in a cluster. */
  nodeId?: string;
}

/** RFC 5424 severities the audit events use. */
export const Severity = { Alert: 1, Critical: 2, Error: 3, Warning: 4, Notice: 5, Informational: 6 } as const;
export type AuditSeverity = (typeof Severity)[keyof typeof Severity];
const SEVERITY_NAMES: Record<AuditSeverity, string> = { 1: 'alert', 2: 'critical', 3: 'error', 4: 'warning', 5: 'notice', 6: 'info' };

/**
 * How loud an event is. Refusals and denials are warnings (something tried and failed:
 * what a SIEM alerts on); deliberate broker actions (bans, revocations, forced
 * disconnects, admin changes) are notices; a successful connection is informational.
 * A behaviour alarm is an alert (someone should look now); an audit's worst finding sets
 * its record's severity (critical, error for high, warning).
 */
export function auditSeverity(event: SecurityEvent): AuditSeverity {
  switch (event.type) {
    case 'connection.accepted':
      return Severity.Informational;
    case 'connection.refused':
    case 'auth.failure':
    case 'authz.denied':
    case 'limit.hit':
      return Severity.Warning;
    case 'client.disconnected':
    case 'ban.added':
    case 'ban.removed':
    case 'revocation.applied':
      return Severity.Notice;
    case 'admin.change':
      return event.outcome === 'ok' ? Severity.Notice : Severity.Warning;
    case 'provisioning':
      return event.outcome === 'ok' ? Severity.Notice : Severity.Warning;
    case 'job':
      return event.action === 'FAILED' || event.action === 'TIMED_OUT' || event.action === 'REJECTED' ? Severity.Warning : Severity.Informational;
    case 'campaign':
      return event.action === 'aborted' || event.action === 'canceled' ? Severity.Warning : Severity.Notice;
    case 'defender.alarm':
      return event.state === 'ALARM' ? Severity.Alert : Severity.Notice;
    case 'defender.action':
      return event.outcome === 'failed' ? Severity.Error : event.outcome === 'applied' ? Severity.Warning : Severity.Notice;
    case 'defender.audit':
      return event.counts.critical > 0 ? Severity.Critical : event.counts.high > 0 ? Severity.Error : event.findings > 0 ? Severity.Warning : Severity.Informational;
    case 'tls.handshake':
      return event.ok ? Severity.Informational : Severity.Warning;
  }
}

/** Builds nested objects from dotted paths; undefined values are left out. */
class Doc {
  readonly root: EcsObject = {};

  set(path: string, value: EcsValue | undefined): this {
    if (value === undefined) return this;
    const keys = path.split('.');
    let node = this.root;
    for (let i = 0; i < keys.length - 1; i++) {
      const key = keys[i]!;
      const next = node[key];
      if (next !== null && typeof next === 'object' && !Array.isArray(next)) node = next;
      else node = node[key] = {};
    }
    node[keys[keys.length - 1]!] = value;
    return this;
  }
}

/** `TLSv1.3` → `1.3` (ECS tls.version is the bare number, tls.version_protocol the name). */
function tlsVersionNumber(version: string): string {
  const m = /^(?:TLSv?|SSLv?)?\s*([0-9.]+)$/i.exec(version.trim());
  return m !== null ? m[1]! : version;
}

function tlsProtocol(version: string): string {
  return /^ssl/i.test(version.trim()) ? 'ssl' : 'tls';
}

/** ECS asks for hashes and serials in upper case without separators. */
function hexUpper(value: string): string {
  return value.replace(/[:\s]/g, '').toUpperCase();
}

function setAddress(doc: Doc, remoteAddress: string): void {
  doc.set('source.address', remoteAddress);
  // source.ip is an `ip` field: only a real address goes there (an IPv4-mapped IPv6 one as IPv4).
  const ip = parseIp(remoteAddress);
  if (ip !== null) doc.set('source.ip', formatIp(ip));
}

function setTls(doc: Doc, tls: TlsSummary | undefined): void {
  if (tls === undefined) return;
  doc.set('tls.version', tlsVersionNumber(tls.version));
  doc.set('tls.version_protocol', tlsProtocol(tls.version));
  doc.set('tls.cipher', tls.cipher);
  // ECS names the key-exchange group `tls.curve`; here it may be a hybrid post-quantum one.
  if (tls.group !== 'none') doc.set('tls.curve', tls.group);
  doc.set('tls.resumed', tls.resumed);
}

function setCertificate(doc: Doc, cert: CertificateSummary | undefined): void {
  if (cert === undefined) return;
  const x = 'tls.client.x509';
  doc.set(`${x}.serial_number`, hexUpper(cert.serialNumber));
  doc.set('tls.client.hash.sha256', hexUpper(cert.fingerprint256));
  if (cert.commonName !== '') doc.set(`${x}.subject.common_name`, [cert.commonName]);
  doc.set(`${x}.subject.distinguished_name`, cert.subject);
  doc.set(`${x}.issuer.distinguished_name`, cert.issuer);
  const sans = [...cert.sans.dns, ...cert.sans.uri, ...cert.sans.ip, ...cert.sans.email];
  if (sans.length > 0) doc.set(`${x}.alternative_names`, sans);
  doc.set('related.hash', [hexUpper(cert.fingerprint256)]);
}

function setUser(doc: Doc, name: string | null | undefined): void {
  if (name === undefined || name === null || name === '') return;
  doc.set('user.name', name);
  doc.set('client.user.name', name);
  doc.set('related.user', [name]);
}

type Category = 'authentication' | 'network' | 'iam' | 'configuration' | 'intrusion_detection' | 'session';
type EventType = 'start' | 'end' | 'info' | 'indicator' | 'connection' | 'allowed' | 'denied' | 'access' | 'change' | 'creation' | 'deletion' | 'protocol' | 'error';
type Outcome = 'success' | 'failure' | 'unknown';

function categorize(doc: Doc, category: Category[], type: EventType[], outcome: Outcome): void {
  doc.set('event.category', category);
  doc.set('event.type', type);
  doc.set('event.outcome', outcome);
}

/** Fills the event-specific fields. Exhaustive: a new event type does not compile until it maps. */
function mapEvent(doc: Doc, e: SecurityEvent): void {
  const m = 'bastion.mqtt';
  switch (e.type) {
    case 'connection.accepted':
      categorize(doc, ['authentication', 'network', 'session'], ['start', 'connection', 'allowed'], 'success');
      setAddress(doc, e.remoteAddress);
      setUser(doc, e.username ?? e.principal);
      doc.set(`${m}.client_id`, e.clientId).set(`${m}.listener`, e.listener).set(`${m}.protocol_version`, e.protocolVersion);
      doc.set('bastion.auth.method', e.method).set('bastion.auth.principal', e.principal);
      setTls(doc, e.tls);
      setCertificate(doc, e.certificate);
      if (e.tls !== undefined) doc.set('tls.established', true);
      return;
    case 'connection.refused':
      categorize(doc, ['network'], ['connection', 'denied'], 'failure');
      setAddress(doc, e.remoteAddress);
      doc.set('event.reason', e.reason);
      doc.set(`${m}.client_id`, e.clientId).set(`${m}.listener`, e.listener).set(`${m}.reason_code`, e.reasonCode).set(`${m}.stage`, e.stage);
      doc.set(`${m}.count`, e.count);
      setTls(doc, e.tls);
      setCertificate(doc, e.certificate);
      return;
    case 'auth.failure':
      // ECS's convention for a failed login: category authentication, type start, outcome failure.
      categorize(doc, ['authentication'], ['start'], 'failure');
      setAddress(doc, e.remoteAddress);
      setUser(doc, e.username);
      doc.set('event.reason', e.reason);
      doc.set(`${m}.client_id`, e.clientId).set(`${m}.listener`, e.listener).set(`${m}.reason_code`, e.reasonCode);
      doc.set('bastion.auth.provider', e.provider);
      return;
    case 'authz.denied':
      categorize(doc, ['network'], ['access', 'denied'], 'failure');
      setAddress(doc, e.remoteAddress);
      setUser(doc, e.principal);
      doc.set('event.reason', e.reason);
      doc.set(`${m}.client_id`, e.clientId).set(`${m}.action`, e.action).set(`${m}.topic`, e.topic).set(`${m}.count`, e.count);
      return;
    case 'limit.hit':
      categorize(doc, ['intrusion_detection', 'network'], ['denied'], 'failure');
      if (e.remoteAddress !== undefined) setAddress(doc, e.remoteAddress);
      doc.set('event.reason', e.detail ?? `limit ${e.limit} ${e.action}`);
      doc.set(`${m}.client_id`, e.clientId).set(`${m}.listener`, e.listener);
      doc.set(`${m}.limit`, e.limit).set(`${m}.action`, e.action).set(`${m}.count`, e.count);
      return;
    case 'client.disconnected':
      categorize(doc, ['network', 'session'], ['connection', 'end'], 'success');
      setAddress(doc, e.remoteAddress);
      doc.set('event.reason', e.reason);
      doc.set(`${m}.client_id`, e.clientId).set(`${m}.listener`, e.listener).set(`${m}.reason_code`, e.reasonCode);
      return;
    case 'ban.added':
    case 'ban.removed': {
      const added = e.type === 'ban.added';
      categorize(doc, ['configuration', 'iam'], [added ? 'creation' : 'deletion', 'change'], 'success');
      // The actor is the user of this event; the banned value is what it is about.
      const actor = added ? e.createdBy : e.removedBy;
      doc.set('user.name', actor).set('related.user', [actor]);
      doc.set('bastion.ban.kind', e.kind).set('bastion.ban.value', e.value);
      if (added) {
        doc.set('event.reason', e.reason).set('bastion.ban.auto', e.auto);
        doc.set('bastion.ban.expires_at', e.expiresAt === null ? null : new Date(e.expiresAt).toISOString());
      }
      relateBanValue(doc, e.kind, e.value, actor);
      return;
    }
    case 'revocation.applied':
      categorize(doc, ['iam', 'network'], ['change', 'end'], 'success');
      doc.set(`${m}.listener`, e.listener).set('bastion.revocation.disconnected', [...e.disconnected]).set(`${m}.count`, e.disconnected.length);
      return;
    case 'admin.change':
      categorize(doc, ['configuration', 'iam'], ['change'], e.outcome === 'ok' ? 'success' : 'failure');
      setAddress(doc, e.remoteAddress);
      doc.set('user.name', e.actor).set('related.user', [e.actor]);
      doc.set('bastion.admin.action', e.action).set('bastion.admin.target', e.target).set('bastion.admin.outcome', e.outcome);
      if (e.detail !== undefined) doc.set('bastion.admin.detail', toEcsValue(e.detail));
      return;
    case 'provisioning':
      categorize(doc, ['iam', 'configuration'], e.outcome === 'ok' ? ['creation'] : ['denied'], e.outcome === 'ok' ? 'success' : 'failure');
      doc.set('bastion.provisioning.action', e.action).set('bastion.provisioning.requester', e.requester).set('bastion.provisioning.template', e.template);
      doc.set('bastion.provisioning.identity', e.identity).set('bastion.provisioning.error_code', e.errorCode).set('event.reason', e.reason);
      doc.set('tls.client.x509.serial_number', e.serialNumber).set('related.user', [e.requester, ...(e.identity !== undefined ? [e.identity] : [])]);
      return;
    case 'job': {
      const failed = e.action === 'FAILED' || e.action === 'TIMED_OUT' || e.action === 'REJECTED';
      categorize(doc, ['configuration'], ['change'], failed ? 'failure' : 'success');
      doc.set('bastion.job.id', e.jobId).set('bastion.job.status', e.action).set('bastion.job.actor', e.actor).set('bastion.job.identity', e.identity);
      doc.set('bastion.job.execution_number', e.executionNumber).set('bastion.job.retried', e.retried).set('related.user', [e.identity]);
      return;
    }
    case 'campaign':
      categorize(doc, ['configuration'], ['change'], e.action === 'aborted' ? 'failure' : 'success');
      doc.set('bastion.campaign.id', e.campaignId).set('bastion.campaign.action', e.action).set('bastion.campaign.job_id', e.jobId);
      doc.set('bastion.campaign.stage', e.stage).set('bastion.campaign.devices', e.devices).set('event.reason', e.reason);
      return;
    case 'defender.alarm':
      categorize(doc, ['intrusion_detection'], ['indicator'], e.state === 'ALARM' ? 'failure' : 'success');
      doc.set('bastion.defender.alert_id', e.alertId).set('rule.name', e.rule).set('bastion.defender.state', e.state).set('bastion.defender.role', e.role);
      doc.set('bastion.defender.value', e.value).set('bastion.defender.threshold', e.threshold).set('bastion.defender.items', e.items);
      doc.set('bastion.defender.node', e.node).set('related.user', [e.identity]);
      return;
    case 'defender.action':
      categorize(doc, ['intrusion_detection'], e.outcome === 'released' ? ['change', 'allowed'] : ['change', 'denied'], e.outcome === 'failed' ? 'failure' : 'success');
      doc.set('bastion.defender.alert_id', e.alertId).set('rule.name', e.rule).set('bastion.defender.action', e.action).set('bastion.defender.outcome', e.outcome);
      doc.set('bastion.defender.actor', e.actor).set('event.reason', e.detail).set('related.user', [e.identity]);
      return;
    case 'defender.audit':
      categorize(doc, ['configuration'], ['info'], e.findings === 0 ? 'success' : 'failure');
      doc.set('bastion.audit_checks.trigger', e.trigger).set('bastion.audit_checks.findings', e.findings).set('bastion.audit_checks.checks', e.checks);
      doc.set('bastion.audit_checks.critical', e.counts.critical).set('bastion.audit_checks.high', e.counts.high).set('bastion.audit_checks.medium', e.counts.medium).set('bastion.audit_checks.low', e.counts.low);
      return;
    case 'tls.handshake':
      categorize(doc, ['network'], e.ok ? ['protocol', 'connection'] : ['protocol', 'denied'], e.ok ? 'success' : 'failure');
      setAddress(doc, e.remoteAddress);
      doc.set('tls.established', e.ok).set('tls.resumed', e.resumed).set('event.reason', e.reason);
      doc.set(`${m}.listener`, e.listener).set(`${m}.count`, e.count);
      return;
  }
}

function relateBanValue(doc: Doc, kind: string, value: string, actor: string): void {
  if (kind === 'ip' || kind === 'cidr') {
    const ip = parseIp(value);
    if (ip !== null) doc.set('related.ip', [formatIp(ip)]);
  } else if (kind === 'username') {
    doc.set('related.user', actor === value ? [actor] : [actor, value]);
  } else if (kind === 'clientId') {
    doc.set('bastion.mqtt.client_id', value);
  } else if (kind === 'certSerial' || kind === 'fingerprint') {
    doc.set('related.hash', [hexUpper(value)]);
  }
}

/** Admin change details are free-form: keep what JSON can carry, drop the rest. */
function toEcsValue(value: unknown): EcsValue {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map(toEcsValue);
  if (typeof value === 'object') {
    const out: EcsObject = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) if (v !== undefined && typeof v !== 'function') out[k] = toEcsValue(v);
    return out;
  }
  return String(value);
}

/** ` 42×` for a record that sums several happenings (absent or one: nothing). */
function times(count: number | undefined): string {
  return count !== undefined && count !== 1 ? ` ${count}×` : '';
}

/** A one-line human summary (ECS `message`), for people reading the raw feed. */
function summary(e: SecurityEvent): string {
  switch (e.type) {
    case 'connection.accepted':
      return `client ${e.clientId} connected from ${e.remoteAddress} on ${e.listener}`;
    case 'connection.refused':
      return `connection from ${e.remoteAddress} on ${e.listener} refused at ${e.stage}${times(e.count)}: ${e.reason}`;
    case 'auth.failure':
      return `authentication of ${e.clientId} from ${e.remoteAddress} failed (${e.provider}): ${e.reason}`;
    case 'authz.denied':
      return `${e.action} on ${e.topic} by ${e.clientId} denied${times(e.count)}: ${e.reason}`;
    case 'limit.hit':
      return `limit ${e.limit} ${e.action} ${e.count}×${e.clientId !== undefined ? ` for ${e.clientId}` : ''}${e.remoteAddress !== undefined ? ` from ${e.remoteAddress}` : ''}`;
    case 'client.disconnected':
      return `client ${e.clientId} disconnected by the broker: ${e.reason}`;
    case 'ban.added':
      return `ban on ${e.kind} ${e.value} by ${e.createdBy}: ${e.reason}`;
    case 'ban.removed':
      return `ban on ${e.kind} ${e.value} lifted by ${e.removedBy}`;
    case 'revocation.applied':
      return `revocation on ${e.listener} disconnected ${e.disconnected.length} client(s)`;
    case 'admin.change':
      return `${e.actor} ${e.action} ${e.target}: ${e.outcome}`;
    case 'provisioning':
      return `provisioning ${e.action} for ${e.identity ?? e.requester}${e.template !== undefined ? ` (template ${e.template})` : ''}: ${e.outcome === 'ok' ? 'ok' : `refused ${e.errorCode ?? ''}: ${e.reason ?? ''}`}`;
    case 'job':
      return `job ${e.jobId} execution ${e.executionNumber} for ${e.identity}: ${e.action} (by the ${e.actor})${e.retried ? ', retry queued' : ''}`;
    case 'campaign':
      return `campaign ${e.campaignId} (job ${e.jobId}) ${e.action === 'stage' ? `stage ${e.stage} queued for ${e.devices} device(s)` : `${e.action} at stage ${e.stage}`}${e.reason !== undefined ? `: ${e.reason}` : ''}`;
    case 'defender.alarm':
      return `defender ${e.state === 'ALARM' ? 'alarm' : 'clear'} ${e.rule} for ${e.identity} (alert ${e.alertId}): ${e.value} against ${e.threshold}${e.items !== undefined && e.items.length > 0 ? ` (new: ${e.items.join(', ')})` : ''}`;
    case 'defender.action':
      return `defender ${e.action} of ${e.identity} (alert ${e.alertId}, rule ${e.rule}): ${e.outcome} by ${e.actor}${e.detail !== undefined ? `: ${e.detail}` : ''}`;
    case 'defender.audit':
      return `security audit (${e.trigger}): ${e.findings} finding(s), ${e.counts.critical} critical, ${e.counts.high} high, ${e.counts.medium} medium, ${e.counts.low} low${e.checks.length > 0 ? ` (${e.checks.join(', ')})` : ''}`;
    case 'tls.handshake':
      return `TLS handshake from ${e.remoteAddress} on ${e.listener} ${e.ok ? 'completed' : `failed${times(e.count)}: ${e.reason ?? 'unknown'}`}`;
  }
}

/** The ECS document for one audit record. Same input, same document (no clock, no host lookups). */
export function toEcs(record: AuditRecord, origin: EcsOrigin = {}): EcsObject {
  const e = record.event;
  const severity = auditSeverity(e);
  const doc = new Doc();
  doc.set('@timestamp', new Date(record.ts).toISOString());
  doc.set('ecs.version', ECS_VERSION);
  doc.set('message', summary(e));
  doc.set('log.level', SEVERITY_NAMES[severity]);
  doc.set('event.kind', 'event');
  doc.set('event.action', e.type);
  doc.set('event.module', 'bastion');
  doc.set('event.dataset', 'bastion.audit');
  doc.set('event.sequence', record.seq);
  doc.set('event.severity', severity);
  // ECS event.hash exists "to demonstrate log integrity": it carries the chain hash; the
  // chain itself (both links) is under bastion.audit so a verifier needs no ECS knowledge.
  doc.set('event.hash', record.hash);
  doc.set('bastion.audit.seq', record.seq);
  doc.set('bastion.audit.hash', record.hash);
  doc.set('bastion.audit.prev_hash', record.prevHash);
  mapEvent(doc, e);
  doc.set('observer.type', 'mqtt-broker');
  doc.set('observer.vendor', 'Bastion');
  doc.set('observer.product', 'bastion');
  doc.set('service.name', 'bastion');
  doc.set('service.type', 'mqtt');
  if (origin.hostname !== undefined && origin.hostname !== '') {
    doc.set('observer.name', origin.hostname);
    doc.set('observer.hostname', origin.hostname);
    doc.set('host.hostname', origin.hostname);
  }
  doc.set('service.node.name', origin.nodeId);
  return doc.root;
}
