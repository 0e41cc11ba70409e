/**
 * Distinguished names for the certificates we issue. Owns: validating the text of a
 * commonName / organizationalUnit and building the subject. Must not: accept control
 * characters or over-long values (they end up in logs, audit records and ACL patterns).
 */
import { PkiError } from './pki-error.js';
import { x509 } from './x509.js';

/** X.520 upper bound for CN and OU (ub-common-name, ub-organizational-unit-name). */
export const MAX_NAME_LENGTH = 64;

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Throws ERR_PKI_INVALID_INPUT unless `value` is 1..64 characters of well-formed text with no
 * control characters and no leading or trailing whitespace.
 * SECURITY: control characters in a subject can forge log lines and confuse DN parsers.
 */
export function assertNameText(field: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `${field} must be a non-empty string`);
  }
  if ([...value].length > MAX_NAME_LENGTH) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `${field} is longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (CONTROL_CHARACTER.test(value) || LONE_SURROGATE.test(value)) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `${field} contains control characters or malformed text`);
  }
  if (value.trim() !== value) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `${field} has leading or trailing whitespace`);
  }
}

/**
 * One attribute value with an explicit string type. SECURITY: @peculiar/x509 reads plain
 * strings as RFC 2253 text (quotes and backslashes are unescaped, a leading `#` is hex), so
 * a commonName like `x, "admin"` would be certified as `admin`. An explicit type object is
 * written as given. PrintableString when the text allows it (what the library would pick),
 * otherwise UTF8String.
 */
function attributeValue(text: string): x509.JsonAttributeObject {
  return x509.Name.isPrintableString(text) ? { printableString: text } : { utf8String: text };
}

/**
 * Subject name: the OUs (when given) then CN, most significant first, as X.500 orders them.
 * `organizationalUnit` is one OU or a list (a CSR may carry several).
 */
export function buildSubject(commonName: string, organizationalUnit?: string | readonly string[]): x509.Name {
  assertNameText('commonName', commonName);
  const units = organizationalUnit === undefined ? [] : typeof organizationalUnit === 'string' ? [organizationalUnit] : [...organizationalUnit];
  units.forEach((ou) => assertNameText('organizationalUnit', ou));
  return new x509.Name([...units.map((ou) => ({ OU: [attributeValue(ou)] })), { CN: [attributeValue(commonName)] }]);
}

/** RFC 4514 escaping of one attribute value. */
function escapeDnValue(value: string): string {
  let out = value.replace(/[\\,+"<>;]/g, (c) => `\\${c}`);
  if (out.startsWith('#') || out.startsWith(' ')) out = `\\${out}`;
  if (out.endsWith(' ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/**
 * A distinguished name as one line in RFC 4514 order (most specific first), e.g.
 * `CN=dev1, OU=ops`: the form we show and compare. Multi-valued RDNs are joined by `+`.
 */
export function formatName(name: x509.Name): string {
  return name
    .toJSON()
    .map((rdn) =>
      Object.entries(rdn)
        .flatMap(([type, values]) => values.map((v) => `${type}=${escapeDnValue(v)}`))
        .join('+'),
    )
    .reverse()
    .join(', ');
}
