/**
 * The behaviour of a listener without an `auth` chain (ChainAuthenticator delegates here):
 * a verified client certificate
 * admits its mapped identity (the listener's `identity` option, default the CN), a TLS-PSK
 * handshake admits its PSK identity; otherwise only a listener with `allowAnonymous: true` admits a client.
 * SECURITY: fails closed; without a chain no password is checked, so a client relying
 * on one alone is refused with BadUserNameOrPassword (it is never ignored into anonymous).
 */
import type { AuthRequest, AuthResult, Authenticator } from '../../broker/ports.js';
import { ReasonCode } from '../../protocol/reason-codes.js';

export class ListenerAuthenticator implements Authenticator {
  authenticate(req: AuthRequest): AuthResult {
    // SECURITY: the transport set the principal from what OpenSSL verified; a certificate
    // without a mapped identity never gets here (refused at CONNECT).
    if ((req.identity.method === 'certificate' || req.identity.method === 'psk') && req.identity.principal !== null) {
      return { ok: true, principal: req.identity.principal };
    }
    if (req.allowAnonymous) return { ok: true, principal: null };
    if (req.username !== undefined || req.password !== undefined) {
      return { ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'password authentication is not enabled on this listener', provider: 'chain' };
    }
    return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'a verified client certificate is required', provider: 'certificate' };
  }
}
