/**
 * The `password` provider: MQTT user name and password against the user store's scrypt
 * hashes. Owns: the login rule. Must not: reveal whether a user exists (same reason code,
 * same message, same work).
 */
import type { AuthRequest } from '../../broker/ports.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import type { PasswordHasher } from './password-hash.js';
import { NOT_MINE, type AuthProvider, type ProviderVerdict } from './provider.js';
import { isValidUserName, type UserStore } from './user-store.js';

const REFUSED: ProviderVerdict = { kind: 'deny', reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'bad user name or password' };

export class PasswordProvider implements AuthProvider {
  readonly name = 'password';

  constructor(
    private readonly users: UserStore,
    private readonly hasher: PasswordHasher,
  ) {}

  async authenticate(req: AuthRequest): Promise<ProviderVerdict> {
    if (req.username === undefined || req.password === undefined) return NOT_MINE;
    const user = isValidUserName(req.username) ? await this.users.find(req.username) : null;
    // SECURITY: an unknown user runs one scrypt against the dummy hash (inside verify).
    const ok = await this.hasher.verify(user?.passwordHash ?? null, req.password);
    if (!ok || user === null) return REFUSED;
    return { kind: 'allow', principal: user.name, method: 'password', username: user.name };
  }
}
