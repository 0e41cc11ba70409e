/**
 * Device provisioning and renewal (issue 13, docs/PROVISIONING.md): a claim or a one-time
 * token turns a CSR into a device identity from a template; a device renews its own
 * certificate; old certificates are superseded. Owns: the checks and their order, the
 * records, the audit events. Must not: speak MQTT or HTTP (mqtt-service.ts and the EST
 * routes do), or sign anything itself (the CA port does).
 *
 * SECURITY: nothing is issued on any refusal: every check (requester, rate, template,
 * CSR, ownership token, parameters, allow-list, hook) runs before the single-use records
 * are spent and before the CA signs. Single-use records (ownership tokens, one-time
 * tokens, claim slots) are spent by atomic updates, so two racing requests cannot both
 * succeed. A CSR's subject is never used: the identity comes from the template.
 */
import type { AuthorizedClient } from '../broker/ports.js';
import type { ProvisioningConfig, TemplateConfig } from '../core/provisioning-config.js';
import type { Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import { checkCsrKey, normalizeSerial, PkiError } from '../pki/index.js';
import { CLAIM_OU, PENDING_OU } from './claim-identity.js';
import { callHook, type HookRequest, type HookVerdict } from './hook.js';
import type { ClaimRef, DeviceCertificateAuthority, ProvisioningStore, RoleBinder } from './ports.js';
import { certificateIdentity } from './provisioning-guard.js';
import { newSecret, secretHash } from './secrets.js';
import { checkParameters, identityFor, TemplateRefusal, type DeviceIdentity } from './template.js';

/** A refused request: what `…/rejected` (or an EST error) says. */
export class ProvisioningRefusal extends Error {
  constructor(
    readonly statusCode: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
  }
}

/** Who asks: a claim certificate or a one-time token, with the template it is for. */
export interface Requester {
  ref: ClaimRef;
  template: string;
  /** `claim:<serial>` or `provision-token:<id>` (audit, hook). */
  label: string;
  clientId: string;
}

export interface CreatedCertificate {
  certificateId: string;
  certificatePem: string;
  certificateOwnershipToken: string;
  expiresAt: Date;
}

export interface RegisteredDevice {
  identity: string;
  certificateId: string;
  certificatePem: string;
  roles: string[];
  notAfter: Date;
  deviceConfiguration: Record<string, string | number | boolean>;
}

export interface RenewedCertificate {
  certificateId: string;
  certificatePem: string;
  notAfter: Date;
}

export interface ProvisioningServiceOptions {
  config: ProvisioningConfig;
  store: ProvisioningStore;
  ca: DeviceCertificateAuthority;
  roles: RoleBinder;
  events: SecurityEvents;
  logger: Logger;
  /** Resolves a hook's CA file path (config-relative). */
  resolvePath: (p: string) => string;
  now?: () => number;
  /** The hook call (tests may point it elsewhere); default: HTTPS POST. */
  hook?: typeof callHook;
}

const DAY_MS = 86_400_000;
/** Step-1 certificates are placeholders: confined to provisioning, refused there, expired after a day. */
const PENDING_DAYS = 1;

function refused(statusCode: number, errorCode: string, message: string): ProvisioningRefusal {
  return new ProvisioningRefusal(statusCode, errorCode, message);
}

export class ProvisioningService {
  private readonly now: () => number;
  private readonly hook: typeof callHook;
  /** Requests per requester in the current minute (bounded: cleared every minute). */
  private rate = new Map<string, number>();
  private rateWindow = 0;

  constructor(private readonly opts: ProvisioningServiceOptions) {
    this.now = opts.now ?? Date.now;
    this.hook = opts.hook ?? callHook;
  }

  /** The claim or token `client` provisions with, or a refusal (403). */
  requesterOf(client: AuthorizedClient): Requester {
    const { store } = this.opts;
    const id = client.identity;
    if (id.method === 'provision-token' && client.principal !== null) {
      const tokenId = client.principal.slice('provision-token:'.length);
      const token = store.token(tokenId);
      if (token === null || token.usedAt !== null || token.expiresAt <= this.now()) throw refused(403, 'InvalidToken', 'the provisioning token is spent, revoked or expired');
      return { ref: { kind: 'token', id: token.id }, template: token.template, label: client.principal, clientId: client.clientId };
    }
    const cert = id.certificate;
    if (cert !== undefined && cert.organizationalUnits.includes(CLAIM_OU)) {
      const serial = normalizeSerial(cert.serialNumber);
      const claim = store.claim(serial);
      if (claim === null) throw refused(403, 'InvalidToken', 'this claim certificate is not a known claim');
      if (claim.revokedAt !== null || claim.expiresAt <= this.now()) throw refused(403, 'InvalidToken', 'this claim is revoked or expired');
      return { ref: { kind: 'claim', serialNumber: serial }, template: claim.template, label: `claim:${serial}`, clientId: client.clientId };
    }
    throw refused(403, 'InvalidToken', 'only a claim certificate or a provisioning token may provision');
  }

  /**
   * Step 1: a placeholder certificate for the CSR's key, and the ownership token that
   * registers it. `client` is the MQTT client, or what EST authenticated (a claim
   * certificate or a token), in the same shape.
   */
  async createFromCsr(client: AuthorizedClient, csrPem: unknown): Promise<CreatedCertificate> {
    let requester = unresolved(client);
    try {
      requester = this.requesterOf(client);
      this.throttle(requester.label);
      this.templateOf(requester, requester.template);
      if (requester.ref.kind === 'claim') {
        const claim = this.opts.store.claim(requester.ref.serialNumber);
        if (claim !== null && claim.maxDevices > 0 && claim.devices >= claim.maxDevices) throw refused(403, 'ClaimExhausted', `this claim has provisioned its ${claim.maxDevices} devices`);
      }
      const csr = this.checkCsr(csrPem);
      const signed = await this.sign({ csrPem: csr, commonName: `pending-${newSecret().slice(0, 16)}`, organizationalUnit: PENDING_OU, sans: [], days: PENDING_DAYS });
      const secret = newSecret();
      const expiresAt = this.now() + this.opts.config.ownershipTokenMinutes * 60_000;
      this.opts.store.addOwnership(secretHash(secret), { certSerial: normalizeSerial(signed.serialNumber), csrPem: csr, claim: requester.ref, expiresAt });
      this.audit('certificate', 'ok', requester, { serialNumber: signed.serialNumber, template: requester.template });
      return { certificateId: signed.serialNumber, certificatePem: signed.certPem, certificateOwnershipToken: secret, expiresAt: new Date(expiresAt) };
    } catch (err) {
      throw this.refusal('certificate', requester, err, requester.template);
    }
  }

  /** Step 2: the device's own certificate, identity and roles. */
  async register(client: AuthorizedClient, templateName: string, ownershipToken: unknown, parameters: unknown): Promise<RegisteredDevice> {
    let requester = unresolved(client);
    try {
      requester = this.requesterOf(client);
      this.throttle(requester.label);
      const template = this.templateOf(requester, templateName);
      if (typeof ownershipToken !== 'string' || ownershipToken.length === 0 || ownershipToken.length > 256) throw refused(400, 'InvalidPayload', 'certificateOwnershipToken must be a string');
      const hash = secretHash(ownershipToken);
      const ownership = this.opts.store.ownership(hash);
      if (ownership === null || ownership.usedAt !== null || ownership.expiresAt <= this.now() || !sameRef(ownership.claim, requester.ref)) {
        throw refused(403, 'InvalidToken', 'the ownership token is unknown, spent, expired or not this claim\'s');
      }
      const params = checkParameters(template, parameters);
      const identity = identityFor(template, params);
      const existing = this.opts.store.device(identity.commonName);
      if (existing !== null) throw refused(409, 'AlreadyProvisioned', `${identity.commonName} is provisioned already (revoke its certificate and remove it first)`);
      if (template.hook !== undefined) {
        const verdict = await this.askHook(template, { template: templateName, parameters: params, requester: requester.label, clientId: requester.clientId, certificateSerial: ownership.certSerial });
        if (!verdict.allow) throw refused(403, 'HookDenied', verdict.reason);
      }
      this.checkRoles(templateName, identity.roles);
      // Everything checked: spend the single-use records, then sign.
      if (!(await this.opts.store.spendOwnership(hash, this.now()))) throw refused(403, 'InvalidToken', 'the ownership token was used meanwhile');
      // The placeholder is not revoked: it is confined to the provisioning topics, refused
      // there (not a claim), and expires in a day; revoking it would grow the CRL that every
      // listener loads by one entry per device provisioned.
      return await this.issueDevice(requester, templateName, template, ownership.csrPem, identity);
    } catch (err) {
      throw this.refusal('register', requester, err, templateName);
    }
  }

  /**
   * Steps 1 and 2 at once, for EST's simpleenroll: the CSR's key certified under the
   * template's identity, with the same checks as `register` (no placeholder certificate:
   * HTTP has no second round trip to wait for).
   */
  async enroll(client: AuthorizedClient, templateName: string, csrPem: unknown, parameters: unknown): Promise<RegisteredDevice> {
    let requester = unresolved(client);
    try {
      requester = this.requesterOf(client);
      this.throttle(requester.label);
      const template = this.templateOf(requester, templateName);
      const csr = this.checkCsr(csrPem);
      const params = checkParameters(template, parameters);
      const identity = identityFor(template, params);
      if (this.opts.store.device(identity.commonName) !== null) throw refused(409, 'AlreadyProvisioned', `${identity.commonName} is provisioned already (revoke its certificate and remove it first)`);
      if (template.hook !== undefined) {
        const verdict = await this.askHook(template, { template: templateName, parameters: params, requester: requester.label, clientId: requester.clientId, certificateSerial: '' });
        if (!verdict.allow) throw refused(403, 'HookDenied', verdict.reason);
      }
      this.checkRoles(templateName, identity.roles);
      return await this.issueDevice(requester, templateName, template, csr, identity);
    } catch (err) {
      throw this.refusal('register', requester, err, templateName);
    }
  }

  /** A new certificate for `client`'s own identity (a new key); the old one is superseded later. */
  async renew(client: AuthorizedClient, csrPem: unknown): Promise<RenewedCertificate> {
    const identity = certificateIdentity(client);
    const requester: Requester = { ...unresolved(client), label: identity ?? client.clientId };
    try {
      const cert = client.identity.certificate;
      if (identity === null || cert === undefined) throw refused(403, 'InvalidToken', 'renewal needs the device\'s own certificate');
      const device = this.opts.store.device(identity);
      const serial = normalizeSerial(cert.serialNumber);
      if (device === null) throw refused(404, 'NotFound', `${identity} was not provisioned by this broker`);
      if (device.certSerial !== serial) throw refused(403, 'InvalidToken', 'only the current certificate may renew (this one was renewed already)');
      const { maxPerDay, graceHours } = this.opts.config.renewal;
      if (this.opts.store.renewalsSince(identity, this.now() - DAY_MS) >= maxPerDay) throw refused(429, 'Throttled', `at most ${maxPerDay} renewals per day`);
      const csr = this.checkCsr(csrPem);
      const days = this.opts.config.templates[device.template]?.days ?? 30;
      const sans = [...cert.sans.dns.map((v) => `dns:${v}`), ...cert.sans.uri.map((v) => `uri:${v}`), ...cert.sans.email.map((v) => `email:${v}`), ...cert.sans.ip.map((v) => `ip:${v}`)];
      const signed = await this.sign({ csrPem: csr, commonName: identity, ...(cert.organizationalUnits[0] !== undefined ? { organizationalUnit: cert.organizationalUnits[0] } : {}), sans, days });
      const newSerial = normalizeSerial(signed.serialNumber);
      this.opts.store.addRenewal({ identity, oldSerial: serial, newSerial, createdAt: this.now(), supersedeAt: this.now() + graceHours * 3_600_000 });
      this.opts.store.putDevice({ ...device, certSerial: newSerial, notAfter: signed.notAfter.getTime() });
      this.audit('renew', 'ok', requester, { serialNumber: signed.serialNumber, identity, template: device.template });
      return { certificateId: signed.serialNumber, certificatePem: signed.certPem, notAfter: signed.notAfter };
    } catch (err) {
      throw this.refusal('renew', requester, err, undefined, identity ?? undefined);
    }
  }

  /** Spends the claim's slot or the token, signs under `identity`, binds its roles, records the device. */
  private async issueDevice(requester: Requester, templateName: string, template: TemplateConfig, csrPem: string, identity: DeviceIdentity): Promise<RegisteredDevice> {
    const { store } = this.opts;
    if (requester.ref.kind === 'claim' && !(await store.takeClaimSlot(requester.ref.serialNumber))) throw refused(403, 'ClaimExhausted', 'this claim has provisioned all its devices');
    if (requester.ref.kind === 'token' && !(await store.spendToken(requester.ref.id, identity.commonName, this.now()))) throw refused(403, 'InvalidToken', 'the provisioning token was used meanwhile');
    const signed = await this.sign({
      csrPem,
      commonName: identity.commonName,
      ...(identity.organizationalUnit !== undefined ? { organizationalUnit: identity.organizationalUnit } : {}),
      sans: identity.sans,
      days: identity.days,
    });
    try {
      this.opts.roles.bind(identity.commonName, identity.roles);
    } catch (err) {
      // A certificate nobody can use is not left valid.
      await this.revokeQuietly(normalizeSerial(signed.serialNumber), 'cessationOfOperation');
      throw err;
    }
    store.putDevice({ identity: identity.commonName, template: templateName, certSerial: normalizeSerial(signed.serialNumber), notAfter: signed.notAfter.getTime(), claim: requester.ref, createdAt: this.now() });
    this.audit('register', 'ok', requester, { serialNumber: signed.serialNumber, template: templateName, identity: identity.commonName });
    return { identity: identity.commonName, certificateId: signed.serialNumber, certificatePem: signed.certPem, roles: identity.roles, notAfter: signed.notAfter, deviceConfiguration: { ...template.deviceConfiguration } };
  }

  /** When `client`'s certificate should be renewed: its notAfter when inside the window, else null. */
  renewalDue(client: AuthorizedClient): { identity: string; certificateId: string; notAfter: Date; renewAfter: Date } | null {
    const identity = certificateIdentity(client);
    const cert = client.identity.certificate;
    if (identity === null || cert === undefined) return null;
    const device = this.opts.store.device(identity);
    if (device === null || device.certSerial !== normalizeSerial(cert.serialNumber)) return null;
    const renewAfter = device.notAfter - this.opts.config.renewal.windowDays * DAY_MS;
    if (this.now() < renewAfter) return null;
    return { identity, certificateId: device.certSerial, notAfter: new Date(device.notAfter), renewAfter: new Date(renewAfter) };
  }

  /** A renewed certificate's first connection supersedes (revokes) the one it replaced. */
  async firstUse(client: AuthorizedClient): Promise<void> {
    const cert = client.identity.certificate;
    if (cert === undefined) return;
    const renewal = this.opts.store.renewalByNewSerial(normalizeSerial(cert.serialNumber));
    if (renewal === null || renewal.supersededAt !== null) return;
    await this.supersede(renewal.identity, renewal.oldSerial, renewal.newSerial, 'first use of the new certificate', client.clientId);
  }

  /** Revokes renewed certificates past their grace; forgets ownership tokens that expired unused (their placeholder expires on its own). */
  async sweep(): Promise<void> {
    const now = this.now();
    for (const r of this.opts.store.dueRenewals(now)) await this.supersede(r.identity, r.oldSerial, r.newSerial, 'grace period over', '');
    for (const o of this.opts.store.expiredOwnerships(now)) {
      this.opts.store.forgetOwnership(o.secretHash);
      this.opts.events.emit({ type: 'provisioning', action: 'expire', outcome: 'ok', requester: o.claim.kind === 'claim' ? `claim:${o.claim.serialNumber}` : `provision-token:${o.claim.id}`, clientId: '', serialNumber: o.certSerial, reason: 'ownership token expired unused' });
    }
  }

  private async supersede(identity: string, oldSerial: string, newSerial: string, why: string, clientId: string): Promise<void> {
    this.opts.store.markSuperseded(newSerial, this.now());
    await this.revokeQuietly(oldSerial, 'superseded');
    this.opts.events.emit({ type: 'provisioning', action: 'supersede', outcome: 'ok', requester: identity, clientId, identity, serialNumber: oldSerial, reason: why });
  }

  /** A template whose roles the ACL lacks cannot bind its devices: refused before anything is spent. */
  private checkRoles(templateName: string, roles: readonly string[]): void {
    const missing = this.opts.roles.missing(roles);
    if (missing.length > 0) throw refused(500, 'InternalError', `template "${templateName}" names roles the ACL does not define (${missing.join(', ')}); the operator must add them`);
  }

  /** Audits (and counts against the rate) a request refused before it reached the service (a payload that is not a request). */
  refuseUnread(client: AuthorizedClient, action: 'certificate' | 'register' | 'renew', refusal: ProvisioningRefusal): ProvisioningRefusal {
    const requester = unresolved(client);
    try {
      this.throttle(requester.label);
    } catch (err) {
      return this.refusal(action, requester, err);
    }
    return this.refusal(action, requester, refusal);
  }

  private templateOf(requester: Requester, name: string): TemplateConfig {
    const template = Object.hasOwn(this.opts.config.templates, name) ? this.opts.config.templates[name] : undefined;
    if (template === undefined) throw refused(404, 'NotFound', `no provisioning template "${name}"`);
    if (requester.template !== name) throw refused(403, 'WrongTemplate', `this claim is for template "${requester.template}", not "${name}"`);
    return template;
  }

  private checkCsr(csrPem: unknown): string {
    if (typeof csrPem !== 'string' || csrPem.length === 0) throw refused(400, 'InvalidPayload', 'certificateSigningRequest must be a PEM string');
    let key: ReturnType<typeof checkCsrKey>;
    try {
      key = checkCsrKey(csrPem);
    } catch (err) {
      if (err instanceof PkiError && (err.code === 'ERR_PKI_WEAK_KEY' || err.code === 'ERR_PKI_UNSUPPORTED_KEY')) throw refused(400, 'WeakKey', err.message);
      if (err instanceof PkiError) throw refused(400, 'InvalidCsr', err.message);
      throw err;
    }
    if (!(this.opts.config.keyTypes as readonly string[]).includes(key.keyAlgorithm)) throw refused(400, 'WeakKey', `key type ${key.keyAlgorithm} is not allowed (provisioning.keyTypes: ${this.opts.config.keyTypes.join(', ')})`);
    if (key.requestsCa) throw refused(400, 'CaNotAllowed', 'the CSR asks for a CA certificate');
    return csrPem;
  }

  private async sign(req: { csrPem: string; commonName: string; organizationalUnit?: string; sans: string[]; days: number }): Promise<{ serialNumber: string; certPem: string; notAfter: Date }> {
    try {
      return await this.opts.ca.sign({ ...req, sans: req.sans });
    } catch (err) {
      this.opts.logger.error({ identity: req.commonName, err: err instanceof Error ? err.message : String(err) }, 'provisioning: the CA could not sign');
      throw refused(500, 'InternalError', 'the certificate could not be signed (see the broker log)');
    }
  }

  private askHook(template: TemplateConfig, body: HookRequest): Promise<HookVerdict> {
    const h = template.hook!;
    return this.hook({ url: h.url, timeoutMs: h.timeoutSeconds * 1000, ...(h.ca !== undefined ? { caFile: this.opts.resolvePath(h.ca) } : {}) }, body);
  }

  private throttle(label: string): void {
    const minute = Math.floor(this.now() / 60_000);
    if (minute !== this.rateWindow) {
      this.rateWindow = minute;
      this.rate = new Map();
    }
    const n = (this.rate.get(label) ?? 0) + 1;
    this.rate.set(label, n);
    if (n > this.opts.config.ratePerMinute) throw refused(429, 'Throttled', `more than ${this.opts.config.ratePerMinute} provisioning requests per minute from this credential`);
  }

  private async revokeQuietly(serial: string, reason: 'superseded' | 'cessationOfOperation'): Promise<void> {
    try {
      await this.opts.ca.revoke(serial, reason);
    } catch (err) {
      this.opts.logger.error({ serial, err: err instanceof Error ? err.message : String(err) }, 'provisioning: cannot revoke a replaced certificate');
    }
  }

  private audit(action: 'certificate' | 'register' | 'renew', outcome: 'ok', requester: Requester, extra: { serialNumber?: string; template?: string; identity?: string }): void {
    this.opts.events.emit({ type: 'provisioning', action, outcome, requester: requester.label, clientId: requester.clientId, ...extra });
  }

  /** Audits a refusal and returns it as a ProvisioningRefusal (an unexpected error becomes InternalError). */
  private refusal(action: 'certificate' | 'register' | 'renew', requester: Requester, err: unknown, template?: string, identity?: string): ProvisioningRefusal {
    let r: ProvisioningRefusal;
    if (err instanceof ProvisioningRefusal) r = err;
    else if (err instanceof TemplateRefusal) r = refused(err.errorCode === 'NotAllowListed' ? 403 : 400, err.errorCode, err.message);
    else {
      this.opts.logger.error({ action, err: err instanceof Error ? err.message : String(err) }, 'provisioning request failed');
      r = refused(500, 'InternalError', 'the request failed (see the broker log)');
    }
    this.opts.events.emit({ type: 'provisioning', action, outcome: 'refused', requester: requester.label, clientId: requester.clientId, errorCode: r.errorCode, reason: r.message, ...(template !== undefined ? { template } : {}), ...(identity !== undefined ? { identity } : {}) });
    return r;
  }
}

/** The requester of an audit record when the claim or token itself was refused. */
function unresolved(client: AuthorizedClient): Requester {
  return { ref: { kind: 'token', id: '' }, template: '', label: client.principal ?? client.clientId, clientId: client.clientId };
}

function sameRef(a: ClaimRef, b: ClaimRef): boolean {
  if (a.kind === 'claim' && b.kind === 'claim') return normalizeSerial(a.serialNumber) === normalizeSerial(b.serialNumber);
  if (a.kind === 'token' && b.kind === 'token') return a.id === b.id;
  return false;
}
