/**
 * Verifies a JWT presented as a credential (`jose`): signature against a static key or a
 * JWKS URL, `iss`, `aud`, `exp` (required), `nbf`, the algorithm allow-list, the client-id
 * claim and the user-name claim. Owns: turning every verification outcome into a reason
 * code. Must not: read key files (server/ hands over the key material).
 *
 * SECURITY: `none` is never accepted (jose refuses it and the schema cannot name it); HMAC
 * algorithms only with a configured secret; a token without `exp` is refused, because a
 * session must never outlive its credential.
 */
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { JwtConfig } from '../../core/auth-config.js';
import { ReasonCode } from '../../protocol/reason-codes.js';

/** Key material as read by server/: a PEM or JWK public key, or a shared secret. */
export type JwtKeyMaterial = { kind: 'jwks'; url: string } | { kind: 'public'; text: string } | { kind: 'secret'; bytes: Buffer };

export type JwtOutcome = { ok: true; username: string; expiresAt: number } | { ok: false; reasonCode: number; reason: string };

const CONTROL = /[\u0000-\u001f\u007f]/;

/** A JWS compact serialization: three base64url parts. */
export function looksLikeJwt(text: string): boolean {
  return /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]+$/.test(text);
}

export class JwtVerifier {
  private readonly key: KeyObject | JWTVerifyGetKey;

  constructor(
    private readonly config: JwtConfig,
    material: JwtKeyMaterial,
  ) {
    if (material.kind === 'jwks') {
      this.key = createRemoteJWKSet(new URL(material.url), {
        cacheMaxAge: config.jwksCacheMaxAgeSeconds * 1000,
        cooldownDuration: config.jwksCooldownSeconds * 1000,
        timeoutDuration: 5000,
      });
    } else if (material.kind === 'public') {
      const text = material.text.trim();
      this.key = text.startsWith('{') ? createPublicKey({ key: JSON.parse(text) as import('node:crypto').JsonWebKey, format: 'jwk' }) : createPublicKey(text);
    } else {
      this.key = createSecretKey(material.bytes);
    }
  }

  async verify(token: string, clientId: string): Promise<JwtOutcome> {
    let payload: JWTPayload;
    try {
      const options = {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: this.config.algorithms,
        clockTolerance: this.config.clockToleranceSeconds,
        requiredClaims: ['exp'],
      };
      const key = this.key;
      payload = (typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options)).payload;
    } catch (err) {
      return refusal(err);
    }
    const c = this.config;
    if (c.clientIdClaim !== undefined && payload[c.clientIdClaim] !== clientId) {
      return { ok: false, reasonCode: ReasonCode.ClientIdentifierNotValid, reason: `the client id differs from the token's ${c.clientIdClaim} claim` };
    }
    const username = payload[c.usernameClaim];
    if (typeof username !== 'string' || username.length === 0 || username.length > 256 || CONTROL.test(username)) {
      return { ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason: `the token has no usable ${c.usernameClaim} claim` };
    }
    return { ok: true, username, expiresAt: payload.exp! * 1000 };
  }
}

function refusal(err: unknown): JwtOutcome {
  const bad = (reason: string): JwtOutcome => ({ ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason });
  if (err instanceof errors.JWTExpired) return bad('the token has expired');
  if (err instanceof errors.JWTClaimValidationFailed) return bad(`the token's ${err.claim} claim is not acceptable (${err.reason})`);
  if (err instanceof errors.JWKSNoMatchingKey) return bad('no key of the key set verifies the token');
  if (err instanceof errors.JOSEAlgNotAllowed) return bad('the token algorithm is not allowed');
  if (err instanceof errors.JWSSignatureVerificationFailed) return bad('the token signature does not verify');
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || !(err instanceof errors.JOSEError)) {
    // SECURITY: no key set, no admission; the client may retry later.
    return { ok: false, reasonCode: ReasonCode.ServerUnavailable, reason: 'the token key set is unavailable' };
  }
  return bad(`the token is not valid (${err.code})`);
}
