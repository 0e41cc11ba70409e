/**
 * The `provision-token` authentication provider (issue 13): a device without a certificate
 * connects over server-authenticated TLS with the user name `$provision` and a one-time
 * token (`bpt_<id>_<secret>`) as its password. Owns: checking the token at CONNECT. Must
 * not: spend it (a registration does, provisioning-service.ts) or admit the client to
 * anything but provisioning (the guard confines it).
 *
 * SECURITY: the secret is compared by its SHA-256 (the only form stored); an unknown,
 * revoked, spent or expired token is refused with 0x86 and the same message, so a
 * guesser learns nothing. A client that does not use `$provision` is left to the next
 * provider.
 */
import type { AuthRequest } from '../broker/ports.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { NOT_MINE, type AuthProvider, type ProviderVerdict } from '../security/authn/provider.js';
import type { ProvisioningStore } from './ports.js';
import { parseToken, secretHash } from './secrets.js';

/** The MQTT user name a token client connects with. */
export const PROVISION_USERNAME = '$provision';

const REFUSED: ProviderVerdict = { kind: 'deny', reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'bad provisioning token' };

/** The principal a token client is known by: `provision-token:<id>`. */
export function tokenPrincipal(id: string): string {
  return `provision-token:${id}`;
}

export class ProvisionTokenProvider implements AuthProvider {
  readonly name = 'provision-token';

  constructor(
    private readonly store: () => ProvisioningStore,
    private readonly now: () => number = Date.now,
  ) {}

  authenticate(req: AuthRequest): ProviderVerdict {
    if (req.username !== PROVISION_USERNAME) return NOT_MINE;
    if (req.password === undefined) return REFUSED;
    const parsed = parseToken(req.password.toString('utf8'));
    if (parsed === null) return REFUSED;
    const token = this.store().tokenByHash(secretHash(parsed.secret));
    if (token === null || token.id !== parsed.id || token.usedAt !== null || token.expiresAt <= this.now()) return REFUSED;
    // The session ends when the token would expire: it cannot outlive its credential.
    return { kind: 'allow', principal: tokenPrincipal(token.id), method: 'provision-token', username: PROVISION_USERNAME, expiresAt: token.expiresAt };
  }
}
