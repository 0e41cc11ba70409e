/**
 * The device's half of docs/PROVISIONING.md, as pure functions: the topics, the request
 * payloads, reading (and checking) every answer, one-time token syntax and client tokens.
 * Owns: what a well-formed answer is. Must not: do I/O or hold MQTT connections
 * (request.ts asks, provision.ts and renewal.ts use the answers).
 *
 * SECURITY: every answer is checked field by field before use; an identity the broker
 * names must be one topic level (no `/`, `+`, `#`), because it becomes part of the
 * device's `$bastion/certs/<identity>/…` topics.
 */
import { randomBytes } from 'node:crypto';
import { TEMPLATE_NAME_RE } from '../core/provisioning-config.js';
import * as topics from '../core/provisioning-topics.js';
import { CREATE_FROM_CSR_TOPIC } from '../core/provisioning-topics.js';
import { DeviceError, ProvisioningError, type ProvisioningStep } from './errors.js';

export { CREATE_FROM_CSR_TOPIC };

/** `$bastion/provision/templates/<template>/provision/json`, for a valid template name. */
export function registerTopic(template: string): string {
  assertTemplateName(template);
  return topics.registerTopic(template);
}

/** `$bastion/certs/<identity>/renew/json`, for a valid identity. */
export function renewTopic(identity: string): string {
  assertIdentity(identity);
  return topics.renewTopic(identity);
}

/** `$bastion/certs/<identity>/renewal-due`, for a valid identity. */
export function renewalDueTopic(identity: string): string {
  assertIdentity(identity);
  return topics.renewalDueTopic(identity);
}

/** The device's own topic tree, which the SDK handles itself. */
export function deviceTopicPrefix(identity: string): string {
  assertIdentity(identity);
  return topics.certsTopicPrefix(identity);
}

export function acceptedTopic(requestTopic: string): string {
  return `${requestTopic}/accepted`;
}

export function rejectedTopic(requestTopic: string): string {
  return `${requestTopic}/rejected`;
}

export function assertTemplateName(template: unknown): asserts template is string {
  if (typeof template !== 'string' || !TEMPLATE_NAME_RE.test(template)) {
    throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `template name ${JSON.stringify(template)} is not 1-64 letters, digits, _ or -`);
  }
}

/** An identity is one topic level of text: no separators, wildcards or control characters. */
// eslint-disable-next-line no-control-regex
const IDENTITY_RE = /^[^/+#\u0000-\u001f\u007f]{1,128}$/u;

export function isValidIdentity(identity: unknown): identity is string {
  return typeof identity === 'string' && IDENTITY_RE.test(identity);
}

function assertIdentity(identity: string): void {
  if (!isValidIdentity(identity)) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `identity ${JSON.stringify(identity)} cannot be a topic level`);
}

/** A random `clientToken` (32 hex characters; the protocol allows 64). */
export function newClientToken(): string {
  return randomBytes(16).toString('hex');
}

// ---- one-time provisioning tokens -------------------------------------------------------

/** `bpt_<12 hex id>_<43 base64url secret>`: what `bastion provision token create` prints. */
const TOKEN_RE = /^bpt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/;
const TOKEN_IN_TEXT_RE = /(?<![A-Za-z0-9_-])bpt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g;

/**
 * Checks a one-time token (surrounding whitespace removed, e.g. a trailing newline from a
 * file) and returns it. SECURITY: the message never repeats the token.
 */
export function parseProvisioningToken(text: string): string {
  const token = typeof text === 'string' ? text.trim() : '';
  if (!TOKEN_RE.test(token)) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', 'not a provisioning token: expected bpt_<12 hex characters>_<43 base64url characters>');
  return token;
}

/**
 * The tokens in a file, in order: every `bpt_…` word, whatever surrounds it (one per line,
 * a table, JSON); lines starting with `#` are comments. Duplicates are kept once.
 */
export function parseTokenList(text: string): string[] {
  const seen = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    if (line.trimStart().startsWith('#')) continue;
    for (const m of line.matchAll(TOKEN_IN_TEXT_RE)) seen.add(m[0]);
  }
  return [...seen];
}

// ---- answers ------------------------------------------------------------------------

export type JsonObject = Record<string, unknown>;

/** The object a payload holds, or null when it is not a JSON object. */
export function jsonObjectOf(payload: Buffer | string): JsonObject | null {
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    return null;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : null;
}

function badAnswer(step: ProvisioningStep | 'renewal-due', message: string): never {
  throw new DeviceError('ERR_DEVICE_BAD_ANSWER', `${step}: malformed answer from the broker: ${message}`);
}

function str(step: ProvisioningStep | 'renewal-due', o: JsonObject, name: string, max = 64 * 1024): string {
  const v = o[name];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) badAnswer(step, `"${name}" is not a string`);
  return v;
}

function date(step: ProvisioningStep | 'renewal-due', o: JsonObject, name: string): Date {
  const d = new Date(str(step, o, name, 64));
  if (Number.isNaN(d.getTime())) badAnswer(step, `"${name}" is not a time`);
  return d;
}

function pem(step: ProvisioningStep, o: JsonObject, name: string): string {
  const v = str(step, o, name);
  if (!v.includes('-----BEGIN CERTIFICATE-----')) badAnswer(step, `"${name}" holds no PEM certificate`);
  return v;
}

/** A `…/rejected` payload as a ProvisioningError (what is missing is filled in, not refused). */
export function rejectionOf(step: ProvisioningStep, o: JsonObject): ProvisioningError {
  const statusCode = typeof o.statusCode === 'number' && Number.isInteger(o.statusCode) ? o.statusCode : 500;
  const errorCode = typeof o.errorCode === 'string' && o.errorCode.length > 0 ? o.errorCode.slice(0, 64) : 'Unknown';
  // One line: the message may end up in logs.
  const errorMessage = typeof o.errorMessage === 'string' ? o.errorMessage.replace(/\s+/g, ' ').trim().slice(0, 500) : '';
  return new ProvisioningError(step, statusCode, errorCode, errorMessage);
}

export interface CsrAccepted {
  certificateId: string;
  certificatePem: string;
  certificateOwnershipToken: string;
  expiresAt: Date;
}

export function parseCsrAccepted(o: JsonObject): CsrAccepted {
  const step = 'create-from-csr';
  return {
    certificateId: str(step, o, 'certificateId', 128),
    certificatePem: pem(step, o, 'certificatePem'),
    certificateOwnershipToken: str(step, o, 'certificateOwnershipToken', 4096),
    expiresAt: date(step, o, 'expiresAt'),
  };
}

export type DeviceConfiguration = Record<string, string | number | boolean>;

export interface RegisterAccepted {
  identity: string;
  certificateId: string;
  certificatePem: string;
  roles: string[];
  notAfter: Date;
  deviceConfiguration: DeviceConfiguration;
}

export function parseRegisterAccepted(o: JsonObject): RegisterAccepted {
  const step = 'register';
  const identity = str(step, o, 'identity', 128);
  if (!isValidIdentity(identity)) badAnswer(step, `identity ${JSON.stringify(identity)} cannot be a topic level`);
  const roles = o.roles ?? [];
  if (!Array.isArray(roles) || !roles.every((r): r is string => typeof r === 'string')) badAnswer(step, '"roles" is not a list of strings');
  const config = o.deviceConfiguration ?? {};
  if (typeof config !== 'object' || config === null || Array.isArray(config)) badAnswer(step, '"deviceConfiguration" is not an object');
  const deviceConfiguration: DeviceConfiguration = {};
  for (const [k, v] of Object.entries(config)) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') badAnswer(step, `deviceConfiguration.${k} is not a string, number or boolean`);
    deviceConfiguration[k] = v;
  }
  return {
    identity,
    certificateId: str(step, o, 'certificateId', 128),
    certificatePem: pem(step, o, 'certificatePem'),
    roles,
    notAfter: date(step, o, 'notAfter'),
    deviceConfiguration,
  };
}

export interface RenewAccepted {
  certificateId: string;
  certificatePem: string;
  notAfter: Date;
}

export function parseRenewAccepted(o: JsonObject): RenewAccepted {
  const step = 'renew';
  return { certificateId: str(step, o, 'certificateId', 128), certificatePem: pem(step, o, 'certificatePem'), notAfter: date(step, o, 'notAfter') };
}

export interface RenewalDue {
  identity: string;
  certificateId: string | undefined;
  notAfter: Date;
  renewAfter: Date | undefined;
}

/** The `renewal-due` notice; null when it is not one (it is then ignored). */
export function parseRenewalDue(o: JsonObject): RenewalDue | null {
  try {
    return {
      identity: str('renewal-due', o, 'identity', 128),
      certificateId: typeof o.certificateId === 'string' ? o.certificateId : undefined,
      notAfter: date('renewal-due', o, 'notAfter'),
      renewAfter: typeof o.renewAfter === 'string' && !Number.isNaN(new Date(o.renewAfter).getTime()) ? new Date(o.renewAfter) : undefined,
    };
  } catch {
    return null;
  }
}

/** The CONNACK user property that says the certificate is inside its renewal window. */
export const RENEW_USER_PROPERTY = 'bastion-cert-renew';

/** The `notAfter` a CONNACK's `bastion-cert-renew` user property names, or null when absent. */
export function renewalFromConnack(userProperties: Record<string, string | string[]> | undefined): { notAfter: Date | null } | null {
  const raw = userProperties?.[RENEW_USER_PROPERTY];
  if (raw === undefined) return null;
  const first = Array.isArray(raw) ? raw[0] : raw;
  const d = first === undefined ? null : new Date(first);
  return { notAfter: d === null || Number.isNaN(d.getTime()) ? null : d };
}
