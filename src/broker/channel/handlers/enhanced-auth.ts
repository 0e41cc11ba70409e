/**
 * Runs the steps of an MQTT 5 enhanced authentication method (§4.12) for CONNECT and for
 * re-authentication; the CONNECT is remembered until the exchange ends.
 */
import { ProtocolViolation } from '../../../core/errors.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import type { ClientIdentity, EnhancedAuthStep } from '../../ports.js';
import type { Channel } from '../channel.js';
import { openSession, type PendingConnect } from './open-session.js';
import { emitAuthFailure } from '../security-emit.js';

/** The CONNECT of each channel in an enhanced-auth exchange, until it ends. */
const pendingByChannel = new WeakMap<Channel, PendingConnect>();

/** Runs one step of the method; the CONNECT is remembered until the exchange ends. */
export function runEnhancedAuthStep(ch: Channel, data: Buffer | undefined, pending: PendingConnect | null): void {
  const auth = ch.enhancedAuth!;
  if (pending !== null) pendingByChannel.set(ch, pending);
  const method = ch.broker.enhancedAuth.get(auth.method)!;
  const apply = (step: EnhancedAuthStep): void => {
    if (ch.state === 'closed') return;
    const connecting = ch.state === 'authenticating';
    switch (step.kind) {
      case 'continue':
        ch.send({ cmd: 'auth', reasonCode: ReasonCode.ContinueAuthentication, properties: { authenticationMethod: auth.method, authenticationData: step.data } });
        return;
      case 'success':
        if (connecting) {
          const p = pendingByChannel.get(ch)!;
          pendingByChannel.delete(ch);
          auth.state.identity = authenticatedIdentity(auth.state.identity, step);
          openSession(ch, p, auth.state.identity, step.data, step.expiresAt);
        } else {
          // SECURITY: re-authentication may refresh the credential, never change who the client is.
          if (step.principal !== auth.state.identity.principal) {
            reauthFailed(ch, auth.method, ReasonCode.NotAuthorized, 're-authentication named a different identity');
            return;
          }
          const props = step.data !== undefined ? { authenticationMethod: auth.method, authenticationData: step.data } : { authenticationMethod: auth.method };
          ch.send({ cmd: 'auth', reasonCode: ReasonCode.Success, properties: props });
          ch.armCredentialExpiry(step.expiresAt);
        }
        return;
      case 'failure':
        if (connecting) ch.refuseConnect(step.reasonCode, step.reason, { stage: 'auth', provider: step.provider ?? auth.method, username: pendingByChannel.get(ch)?.packet.username });
        else reauthFailed(ch, step.provider ?? auth.method, reauthFailureCode(step.reasonCode), step.reason);
        return;
      default: {
        const unreachable: never = step;
        return unreachable;
      }
    }
  };
  const result = method.step(auth.state, data);
  if (result instanceof Promise) {
    ch.holdIncoming();
    result.then(
      (step) => {
        try {
          apply(step);
        } catch (err) {
          ch.fail(err);
        }
        ch.releaseIncoming();
      },
      () => {
        // SECURITY: a failing method means deny; at CONNECT it is an authentication failure of that method.
        if (ch.state === 'authenticating') ch.refuseConnect(ReasonCode.NotAuthorized, 'authentication method failed', { stage: 'auth', provider: auth.method, username: pendingByChannel.get(ch)?.packet.username });
        else ch.fail(new ProtocolViolation(ReasonCode.NotAuthorized, 'authentication method failed'));
      },
    );
  } else apply(result);
}

/** The transport identity updated with what authentication proved; certificate details are kept. */
export function authenticatedIdentity(identity: ClientIdentity, result: { principal: string | null; method?: ClientIdentity['method']; username?: string }): ClientIdentity {
  return {
    ...identity,
    principal: result.principal,
    ...(result.method !== undefined ? { method: result.method } : {}),
    ...(result.username !== undefined ? { username: result.username } : {}),
  };
}

/** A failed re-authentication: an authentication failure, and the live session it ends. */
function reauthFailed(ch: Channel, provider: string, reasonCode: number, reason: string): void {
  emitAuthFailure(ch, provider, ch.client?.identity.username, reasonCode, reason);
  ch.expel(reasonCode, reason);
}

/** DISCONNECT reason codes a failed re-authentication may carry (MQTT 5 §3.14.2.1). */
const DISCONNECT_CODES: ReadonlySet<number> = new Set([ReasonCode.UnspecifiedError, ReasonCode.ImplementationSpecificError, ReasonCode.NotAuthorized, ReasonCode.ServerBusy]);

/** CONNACK-only codes (0x86 bad password, 0x8C bad method, 0x88 unavailable) become 0x87 on DISCONNECT. */
function reauthFailureCode(code: number): number {
  return DISCONNECT_CODES.has(code) ? code : ReasonCode.NotAuthorized;
}
