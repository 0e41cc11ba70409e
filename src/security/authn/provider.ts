/**
 * The shape of one authentication provider in a listener's chain, and the verdicts it
 * may give. Owns: the contract only. Must not: do I/O (providers get their stores and keys
 * through ports built by server/).
 */
import type { AuthMethodName, AuthRequest } from '../../broker/ports.js';

/** A provider's answer: admit, refuse (final), or leave the client to the next provider. */
export type ProviderVerdict =
  | { kind: 'allow'; principal: string; method: AuthMethodName; username?: string; expiresAt?: number }
  | { kind: 'deny'; reasonCode: number; reason: string }
  | { kind: 'not-mine' };

export interface AuthProvider {
  readonly name: string;
  /** SECURITY: must not throw for bad input (a throw is treated as deny, but is logged as a fault). */
  authenticate(req: AuthRequest): ProviderVerdict | Promise<ProviderVerdict>;
}

export const NOT_MINE: ProviderVerdict = { kind: 'not-mine' };
