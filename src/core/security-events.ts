/**
 * Security events: the one typed stream every security-relevant happening goes through
 * (accepted and refused connections, authentication failures, authorization denials,
 * limit hits, bans, revocations, forced disconnects, admin changes, TLS handshakes).
 * Owns: the event shapes and a synchronous fan-out to subscribers. Must not: decide
 * anything, aggregate, or do I/O. The audit log, the metrics and the automatic bans
 * (brute force, flapping) are subscribers; the code that sees a happening emits it.
 *
 * Emitting is cheap (no subscriber: one length check), so it may sit on paths that run
 * per refused message; per-message happenings are emitted only when something is refused.
 */
import type { Logger } from './logger.js';

/** What a verified client certificate contributed, for records (no DER, no key). */
export interface CertificateSummary {
  serialNumber: string;
  fingerprint256: string;
  commonName: string;
  issuer: string;
  subject: string;
  sans: { dns: string[]; uri: string[]; ip: string[]; email: string[] };
}

/** The negotiated TLS parameters of a connection (absent on plaintext listeners). */
export interface TlsSummary {
  version: string;
  cipher: string;
  /** The key-exchange group (`X25519MLKEM768` is hybrid post-quantum), `none` without one. */
  group: string;
  resumed: boolean;
}

/** Where a refused connection was stopped. */
export type RefusalStage = 'accept' | 'tls' | 'connect' | 'auth' | 'admission';

/** Which limit a `limit.hit` event names. */
export type LimitName =
  | 'connections-total'
  | 'connections-listener'
  | 'ip-concurrent'
  | 'ip-rate'
  | 'publish-rate'
  | 'bandwidth'
  | 'subscriptions'
  | 'client-id-length'
  | 'topic-levels'
  | 'packet-size'
  | 'queue-full'
  | 'inflight'
  | 'slow-client';

export type SecurityEvent =
  /** A session opened (CONNACK success was sent). */
  | {
      type: 'connection.accepted';
      listener: string;
      remoteAddress: string;
      clientId: string;
      principal: string | null;
      method: string;
      username?: string;
      protocolVersion: number;
      tls?: TlsSummary;
      certificate?: CertificateSummary;
    }
  /** A connection refused before a session opened, at any stage (not for authentication failures: see auth.failure). */
  | {
      type: 'connection.refused';
      stage: RefusalStage;
      listener: string;
      remoteAddress: string;
      clientId?: string;
      /** v5 reason code (CONNACK), when one was sent or would have been. */
      reasonCode?: number;
      reason: string;
      tls?: TlsSummary;
      certificate?: CertificateSummary;
      /** Set by the audit log only: refusals at accept summed over `audit.aggregateSeconds` (absent: one). */
      count?: number;
    }
  /** An authentication provider (or the chain) refused the credentials. */
  | {
      type: 'auth.failure';
      listener: string;
      remoteAddress: string;
      clientId: string;
      username?: string;
      /** The provider or method that decided: password, jwt, scram, certificate, psk, anonymous, chain. */
      provider: string;
      reasonCode: number;
      reason: string;
    }
  /** Authorization refused a publish, a subscribe, a will, or a delivery. */
  | {
      type: 'authz.denied';
      clientId: string;
      principal: string | null;
      remoteAddress: string;
      action: 'publish' | 'subscribe' | 'will' | 'receive';
      topic: string;
      reason: string;
      /** Set by the audit log only: denials summed over `audit.aggregateSeconds` (absent: one). */
      count?: number;
    }
  /** A limit refused or dropped something. `count` > 1 only when the emitter already aggregated. */
  | {
      type: 'limit.hit';
      limit: LimitName;
      listener?: string;
      remoteAddress?: string;
      clientId?: string;
      /** What the limit did: refused a connection, dropped a message, answered a code, disconnected. */
      action: 'refused' | 'dropped' | 'rejected' | 'disconnected';
      count: number;
      detail?: string;
    }
  /** The broker closed a live session on purpose (ban, revocation, takeover excluded, slow client, credential expiry, operator kick). */
  | {
      type: 'client.disconnected';
      clientId: string;
      remoteAddress: string;
      listener: string;
      reasonCode: number;
      reason: string;
    }
  /** An entry added to the ban list: `list` deny is a ban, allow an allow-list entry (absent: deny). */
  | { type: 'ban.added'; kind: string; value: string; list?: 'deny' | 'allow'; reason: string; createdBy: string; expiresAt: number | null; auto: boolean }
  /** An entry removed: `removedBy` is the operator, or `expiry` when its time ran out. */
  | { type: 'ban.removed'; kind: string; value: string; list?: 'deny' | 'allow'; removedBy: string }
  /** A CRL was applied to live sessions. */
  | { type: 'revocation.applied'; listener: string; disconnected: string[] }
  /** A change through the admin API or the CLI (admin/api/admin-change.ts). */
  | { type: 'admin.change'; actor: string; remoteAddress: string; action: string; target: string; outcome: string; detail?: Record<string, unknown> }
  /**
   * Device provisioning and renewal (issue 13): a certificate issued from a CSR, a
   * registration, a renewal, an old certificate superseded, or a refused request
   * (`outcome` refused with its `errorCode`). `requester` is the claim (`claim:<serial>`),
   * the token (`provision-token:<id>`) or the device identity that asked.
   */
  | {
      type: 'provisioning';
      action: 'certificate' | 'register' | 'renew' | 'supersede' | 'expire';
      outcome: 'ok' | 'refused';
      requester: string;
      clientId: string;
      template?: string;
      identity?: string;
      serialNumber?: string;
      errorCode?: string;
      reason?: string;
    }
  /**
   * An OTA job execution changed state (issue 14): the device moved it (IN_PROGRESS,
   * SUCCEEDED, FAILED, REJECTED) or the service did (TIMED_OUT, CANCELED); `retried` when
   * a new execution was queued for another try.
   */
  | {
      type: 'job';
      action: 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'CANCELED';
      actor: 'device' | 'service';
      jobId: string;
      identity: string;
      executionNumber: number;
      retried: boolean;
    }
  /**
   * An OTA campaign moved on its own (issue 14): a stage queued (`devices` added), the last
   * stage finished (completed), the abort rule tripped (aborted: the job canceled, `devices`
   * executions canceled), or its job was canceled by other means (canceled).
   */
  | {
      type: 'campaign';
      action: 'stage' | 'completed' | 'aborted' | 'canceled';
      campaignId: string;
      jobId: string;
      stage: number;
      devices: number;
      reason?: string;
    }
  /**
   * Behaviour detection (issue 15): a rule's alarm for an identity was raised (ALARM) or
   * ended (CLEAR). `value` is what the window measured, `threshold` what it was compared
   * with; `items` names what a new-behaviour rule saw for the first time.
   */
  | {
      type: 'defender.alarm';
      alertId: number;
      rule: string;
      identity: string;
      role: string;
      state: 'ALARM' | 'CLEAR';
      value: number;
      threshold: number;
      items?: string[];
      node: string;
    }
  /**
   * An action on an identity because of an alarm (quarantine, throttle, disconnect, ban), or
   * its release. `outcome`: applied, dry-run (recorded, not done), failed (with `detail`),
   * released (an operator or an expiry lifted it).
   */
  | {
      type: 'defender.action';
      alertId: number;
      action: 'quarantine' | 'throttle' | 'disconnect' | 'ban' | 'webhook';
      identity: string;
      rule: string;
      outcome: 'applied' | 'dry-run' | 'failed' | 'released';
      actor: string;
      detail?: string;
    }
  /** A security audit ran (on its schedule or asked for): how many findings at each severity. */
  | {
      type: 'defender.audit';
      trigger: 'schedule' | 'operator';
      findings: number;
      counts: { low: number; medium: number; high: number; critical: number };
      /** The checks that found something, most severe first (at most 20). */
      checks: string[];
    }
  /** A TLS handshake finished; failures carry the reason OpenSSL gave. */
  | {
      type: 'tls.handshake';
      listener: string;
      remoteAddress: string;
      ok: boolean;
      resumed: boolean;
      /** The negotiated key-exchange group of a completed handshake (absent on failures). */
      group?: string;
      reason?: string;
      /** Set by the audit log only: failures summed over `audit.aggregateSeconds` (absent: one). */
      count?: number;
    };

export type SecurityEventType = SecurityEvent['type'];
export type SecurityEventListener = (event: SecurityEvent, at: number) => void;

export class SecurityEvents {
  private listeners: SecurityEventListener[] = [];

  constructor(
    private readonly logger: Logger | null = null,
    private readonly now: () => number = Date.now,
  ) {}

  /** Adds a subscriber; returns a function removing it. */
  on(listener: SecurityEventListener): () => void {
    this.listeners = [...this.listeners, listener];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  /** True when someone listens (emitters may skip building an event otherwise). */
  get active(): boolean {
    return this.listeners.length > 0;
  }

  /** Hands `event` to every subscriber. A failing subscriber is logged and does not stop the others. */
  emit(event: SecurityEvent): void {
    const listeners = this.listeners;
    if (listeners.length === 0) return;
    const at = this.now();
    for (const listener of listeners) {
      try {
        listener(event, at);
      } catch (err) {
        this.logger?.error({ event: event.type, err: err instanceof Error ? err.message : String(err) }, 'security event subscriber failed');
      }
    }
  }
}
