/**
 * A provisioning template applied to a device's parameters: which parameters are
 * acceptable, and the identity (CN, OU, SANs), validity and roles they produce. Owns: the
 * parameter checks and the pattern expansion. Must not: sign, store or call the hook.
 *
 * SECURITY: every parameter is matched whole against its pattern (anchored here, whatever
 * the operator wrote), unknown parameters are refused, and values are bounded in size, so
 * a device cannot choose an identity the template did not allow.
 */
import { PLACEHOLDER_RE, type TemplateConfig } from '../core/provisioning-config.js';
import { assertNameText, canonicalSans, PkiError } from '../pki/index.js';

/** The identity a template gives a device. */
export interface DeviceIdentity {
  commonName: string;
  organizationalUnit?: string;
  /** `type:value` (dns, uri, email, ip). */
  sans: string[];
  days: number;
  roles: string[];
}

/** Why parameters are refused (errorCode InvalidParameters or NotAllowListed). */
export class TemplateRefusal extends Error {
  constructor(
    readonly errorCode: 'InvalidParameters' | 'NotAllowListed',
    message: string,
  ) {
    super(message);
  }
}

const MAX_VALUE_LENGTH = 128;

/** Anchors an operator's pattern: the whole value must match. */
function anchored(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`, 'u');
}

/** The checked parameters: strings, each declared and matching its pattern. */
export function checkParameters(template: TemplateConfig, raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new TemplateRefusal('InvalidParameters', 'parameters must be an object of strings');
  const given = raw as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const name of Object.keys(given)) {
    // Own keys only: `constructor` or `__proto__` is not a declared parameter.
    if (!Object.hasOwn(template.parameters, name)) throw new TemplateRefusal('InvalidParameters', `unknown parameter "${name.slice(0, 64)}"`);
  }
  for (const [name, spec] of Object.entries(template.parameters)) {
    const value = given[name];
    if (value === undefined) {
      if (spec.required) throw new TemplateRefusal('InvalidParameters', `parameter "${name}" is required`);
      continue;
    }
    if (typeof value !== 'string') throw new TemplateRefusal('InvalidParameters', `parameter "${name}" must be a string`);
    if (value.length === 0 || value.length > MAX_VALUE_LENGTH) throw new TemplateRefusal('InvalidParameters', `parameter "${name}" must be 1-${MAX_VALUE_LENGTH} characters`);
    if (!anchored(spec.pattern).test(value)) throw new TemplateRefusal('InvalidParameters', `parameter "${name}" does not match ${spec.pattern}`);
    out[name] = value;
  }
  if (template.allowSerials !== undefined) {
    const serial = out.serialNumber;
    if (serial === undefined || !template.allowSerials.includes(serial)) throw new TemplateRefusal('NotAllowListed', `serial number ${JSON.stringify(serial ?? '')} is not on the template's allow-list`);
  }
  return out;
}

function expand(pattern: string, params: Record<string, string>): string {
  return pattern.replace(PLACEHOLDER_RE, (_m, name: string) => params[name] ?? '');
}

/**
 * The identity for checked parameters (see checkParameters). SECURITY: it is checked as the
 * CA would check it (name lengths and characters, SAN syntax) before anything is spent or
 * signed, so a value the CA would refuse is the device's error (InvalidParameters), found
 * while nothing is used up.
 */
export function identityFor(template: TemplateConfig, params: Record<string, string>): DeviceIdentity {
  const organizationalUnit = template.organizationalUnit !== undefined ? expand(template.organizationalUnit, params) : undefined;
  const identity: DeviceIdentity = {
    commonName: expand(template.commonName, params),
    ...(organizationalUnit !== undefined ? { organizationalUnit } : {}),
    sans: template.sans.map((s) => expand(s, params)),
    days: template.days,
    roles: [...template.roles],
  };
  try {
    assertNameText('commonName', identity.commonName);
    if (identity.organizationalUnit !== undefined) assertNameText('organizationalUnit', identity.organizationalUnit);
    canonicalSans(identity.sans.map(sanFromText));
  } catch (err) {
    if (err instanceof PkiError || err instanceof TemplateRefusal) throw new TemplateRefusal('InvalidParameters', `the parameters make an identity the CA refuses: ${err.message}`);
    throw err;
  }
  return identity;
}

/** `dns:a.example` → `{ type: 'dns', value: 'a.example' }` (the template schema admits only these four types). */
export function sanFromText(text: string): { type: 'dns' | 'uri' | 'email' | 'ip'; value: string } {
  const colon = text.indexOf(':');
  const type = text.slice(0, colon);
  if (type !== 'dns' && type !== 'uri' && type !== 'email' && type !== 'ip') throw new TemplateRefusal('InvalidParameters', `not a subjectAltName: ${text.slice(0, 80)}`);
  return { type, value: text.slice(colon + 1) };
}
