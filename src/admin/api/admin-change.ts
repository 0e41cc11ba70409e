/**
 * The one place an administrative change is recorded: who made it, what, and the outcome.
 * Owns: the shape of the admin change event. Must not: decide anything, or keep a
 * process-wide list of consumers: several servers run in one process (tests), and each
 * one's audit log must record its own changes only. The consumer travels with the caller
 * (AdminServices.onChange: the server's security event stream, hence its audit log).
 */
import type { Logger } from '../../core/logger.js';
import type { SecurityEvent } from '../../core/security-events.js';

/**
 * Who made a change: an operator certificate (its CN), a bearer token (its name), or a
 * local CLI user working on the data directory directly (the OS user name).
 */
export interface Actor {
  kind: 'certificate' | 'token' | 'local';
  name: string;
  remoteAddress: string;
}

export interface AdminChange {
  actor: Actor;
  /** What was done, e.g. `client.kick`, `ban.add`, `user.del`, `role.put`, `token.revoke`. */
  action: string;
  /** What it was done to (client id, user name, role name, ban id...). */
  target: string;
  outcome: 'ok' | 'not-found' | 'conflict' | 'invalid' | 'failed';
  detail?: Record<string, unknown>;
}

export type AdminChangeSink = (change: AdminChange) => void;

/** Where a change is recorded: the log line, and the one consumer of this server (if any). */
export interface AdminChangeTarget {
  logger: Logger;
  onChange?: AdminChangeSink | undefined;
}

/** The security event (core/security-events.ts) of a change: the server emits it on the broker's stream. */
export function adminChangeEvent(change: AdminChange): Extract<SecurityEvent, { type: 'admin.change' }> {
  return {
    type: 'admin.change',
    actor: `${change.actor.kind}:${change.actor.name}`,
    remoteAddress: change.actor.remoteAddress,
    action: change.action,
    target: change.target,
    outcome: change.outcome,
    ...(change.detail !== undefined ? { detail: change.detail } : {}),
  };
}

/** Logs one structured line for the change and hands it to the target's consumer. */
export function recordAdminChange(to: AdminChangeTarget, change: AdminChange): void {
  const { logger, onChange } = to;
  const line = { event: 'admin.change', actor: `${change.actor.kind}:${change.actor.name}`, from: change.actor.remoteAddress, action: change.action, target: change.target, outcome: change.outcome, ...(change.detail !== undefined ? { detail: change.detail } : {}) };
  if (change.outcome === 'ok') logger.info(line, 'admin change');
  else logger.warn(line, 'admin change');
  if (onChange === undefined) return;
  try {
    onChange(change);
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'admin change consumer failed');
  }
}
