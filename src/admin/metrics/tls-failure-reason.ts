/**
 * A TLS handshake failure as a short, fixed label value. Owns: the list of reasons a
 * failure metric may carry. Must not: keep the raw message (it goes to the audit log).
 *
 * SECURITY: the raw OpenSSL text varies with the peer (it may quote what the peer sent);
 * as a label it would let a scanner create series without bound. A fixed vocabulary keeps
 * the metric's size constant whatever arrives.
 */

export const TLS_FAILURE_REASONS = [
  'no_certificate',
  'bad_certificate',
  'unknown_ca',
  'certificate_expired',
  'certificate_revoked',
  'protocol_version',
  'no_shared_cipher',
  'post_quantum_required',
  'not_tls',
  'timeout',
  'peer_closed',
  'other',
] as const;
export type TlsFailureReason = (typeof TLS_FAILURE_REASONS)[number];

/** Ordered: the first pattern that matches names the reason (matched against lower case, `_` as space). */
const PATTERNS: ReadonlyArray<readonly [RegExp, TlsFailureReason]> = [
  [/no post.quantum key exchange/, 'post_quantum_required'],
  [/peer did not return a certificate|no client certificate|certificate required/, 'no_certificate'],
  [/unknown ca|issuer|self.signed|unable to verify|untrusted/, 'unknown_ca'],
  [/expired|not yet valid/, 'certificate_expired'],
  [/revoked/, 'certificate_revoked'],
  [/certificate|cert /, 'bad_certificate'],
  [/http request|wrong version number|record layer|packet length too long|unknown protocol|not tls/, 'not_tls'],
  [/protocol version|unsupported protocol|version too low|inappropriate fallback/, 'protocol_version'],
  [/no shared cipher|no cipher|handshake failure|no suitable|sigalg|no shared group/, 'no_shared_cipher'],
  [/timed? ?out/, 'timeout'],
  [/socket disconnected|econnreset|socket hang up|closed|epipe/, 'peer_closed'],
];

export function tlsFailureReason(message: string | undefined): TlsFailureReason {
  if (message === undefined) return 'other';
  const text = message.toLowerCase().replace(/_/g, ' ');
  for (const [pattern, reason] of PATTERNS) if (pattern.test(text)) return reason;
  return 'other';
}
