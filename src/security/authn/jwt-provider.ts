/**
 * The `jwt` provider (a JWT as the MQTT password) and the MQTT 5 enhanced method `JWT`
 * (the token in Authentication Data; re-authentication with AUTH 0x19 and a fresh token
 * extends the session). Owns: where the token comes from. Must not: verify it itself
 * (jwt-verifier.ts does).
 */
import type { AuthRequest, EnhancedAuthMethod, EnhancedAuthState, EnhancedAuthStep } from '../../broker/ports.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import { looksLikeJwt, type JwtVerifier } from './jwt-verifier.js';
import { NOT_MINE, type AuthProvider, type ProviderVerdict } from './provider.js';

const JWT_METHOD = 'JWT';

export class JwtProvider implements AuthProvider {
  readonly name = 'jwt';
  constructor(private readonly verifier: JwtVerifier) {}

  /** Claims a password that is shaped like a JWT; the MQTT user name is not trusted (the token names the user). */
  async authenticate(req: AuthRequest): Promise<ProviderVerdict> {
    const token = req.password?.toString('utf8');
    if (token === undefined || !looksLikeJwt(token)) return NOT_MINE;
    const r = await this.verifier.verify(token, req.clientId);
    if (!r.ok) return { kind: 'deny', reasonCode: r.reasonCode, reason: r.reason };
    return { kind: 'allow', principal: r.username, method: 'jwt', username: r.username, expiresAt: r.expiresAt };
  }
}

export class JwtMethod implements EnhancedAuthMethod {
  readonly name = JWT_METHOD;
  constructor(private readonly verifier: JwtVerifier) {}

  async step(state: EnhancedAuthState, data: Buffer | undefined): Promise<EnhancedAuthStep> {
    const token = data?.toString('utf8') ?? '';
    if (!looksLikeJwt(token)) return { kind: 'failure', reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'the authentication data is not a JWT' };
    const r = await this.verifier.verify(token, state.clientId);
    if (!r.ok) return { kind: 'failure', reasonCode: r.reasonCode, reason: r.reason };
    return { kind: 'success', principal: r.username, method: 'jwt', username: r.username, expiresAt: r.expiresAt };
  }
}
