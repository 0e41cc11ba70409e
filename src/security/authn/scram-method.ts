/**
 * MQTT 5 enhanced authentication `SCRAM-SHA-256` over CONNECT/AUTH (MQTT 5 §4.12):
 * client-first in CONNECT, server-first in AUTH 0x18, client-final in AUTH, server-final
 * in CONNACK (or in AUTH 0x00 after re-authentication). Owns: the two steps and the
 * unknown-user disguise. Must not: hash passwords (the keys were stored at `user add`).
 *
 * SECURITY: an unknown user gets a salt derived from its name with a per-process secret
 * and keys nobody knows, so server-first looks the same (and stays the same on a retry)
 * and the proof fails exactly like a wrong password.
 */
import { randomBytes } from 'node:crypto';
import type { EnhancedAuthMethod, EnhancedAuthState, EnhancedAuthStep } from '../../broker/ports.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import { hmacSha256 } from './password-hash.js';
import { parseClientFirst, serverFirstMessage, verifyClientFinal, type ScramExchange } from './scram.js';
import { isValidUserName, type ScramCredentials, type UserStore } from './user-store.js';

const SCRAM_METHOD = 'SCRAM-SHA-256';
const EXCHANGE = 'scram-sha-256';

export interface ScramMethodOptions {
  /** Iterations announced for unknown users: the same as new users get. */
  iterations: number;
  /** Server nonce source (tests pin it to RFC 7677's vector). */
  serverNonce?: () => string;
  /** Secret for the unknown-user disguise; random per process by default. */
  disguiseSecret?: Buffer;
}


export class ScramSha256Method implements EnhancedAuthMethod {
  readonly name = SCRAM_METHOD;
  private readonly serverNonce: () => string;
  private readonly secret: Buffer;

  constructor(
    private readonly users: UserStore,
    private readonly options: ScramMethodOptions,
  ) {
    this.serverNonce = options.serverNonce ?? (() => randomBytes(18).toString('base64'));
    this.secret = options.disguiseSecret ?? randomBytes(32);
  }

  async step(state: EnhancedAuthState, data: Buffer | undefined): Promise<EnhancedAuthStep> {
    const exchange = state.scratch.get(EXCHANGE) as ScramExchange | undefined;
    if (exchange === undefined) return this.first(state, data);
    state.scratch.delete(EXCHANGE);
    const outcome = verifyClientFinal(exchange, data?.toString('utf8') ?? '');
    // SECURITY: a wrong proof reads the same for a known and an unknown user.
    if (!outcome.ok) return { kind: 'failure', reasonCode: ReasonCode.BadUserNameOrPassword, reason: outcome.reason === 'bad SCRAM proof' ? 'bad user name or password' : outcome.reason };
    const name = exchange.first.username;
    return { kind: 'success', principal: name, method: 'scram', username: name, data: Buffer.from(outcome.serverFinal, 'utf8') };
  }

  private async first(state: EnhancedAuthState, data: Buffer | undefined): Promise<EnhancedAuthStep> {
    const first = data !== undefined ? parseClientFirst(data.toString('utf8')) : null;
    if (first === null) return { kind: 'failure', reasonCode: ReasonCode.NotAuthorized, reason: 'malformed SCRAM client-first message' };
    const user = isValidUserName(first.username) ? await this.users.find(first.username) : null;
    const credentials = user?.scram ?? this.disguise(first.username);
    const { message, nonce } = serverFirstMessage(first, this.serverNonce(), credentials);
    state.scratch.set(EXCHANGE, { first, serverFirst: message, nonce, credentials } satisfies ScramExchange);
    return { kind: 'continue', data: Buffer.from(message, 'utf8') };
  }

  private disguise(name: string): ScramCredentials {
    return {
      salt: hmacSha256(this.secret, `salt\0${name}`).subarray(0, 16),
      iterations: this.options.iterations,
      storedKey: hmacSha256(this.secret, `stored\0${name}`),
      serverKey: hmacSha256(this.secret, `server\0${name}`),
    };
  }
}
