/**
 * Where alerts go besides the audit log and the metrics (issue 15 item 3): a message on
 * `$bastion/alerts/<rule>/<identity>` (JSON, QoS 1, not retained) for operators' tools
 * subscribed there, and an optional webhook POST. Owns: both payloads and the webhook's
 * timeout. Must not: decide anything about alerts, or hold an alert up: the webhook runs in
 * the background and reports its outcome through `onWebhook` (recorded on the alert).
 *
 * SECURITY: the alerts topic is under `$bastion/`, which devices cannot read unless an
 * operator's ACL grants it; the identity in the topic has MQTT's special characters
 * replaced (the payload carries it exactly). The webhook's bearer token comes from an
 * environment variable, never from the config file, and is never logged.
 */
import type { Broker } from '../broker/broker.js';
import type { DetectSettings } from '../core/defender-config.js';
import type { Logger } from '../core/logger.js';
import type { ActionOutcome, DefenderAlert } from '../defender/response/alert-store.js';
import type { AlertNotifier } from '../defender/response/responder.js';

export const ALERTS_TOPIC_PREFIX = '$bastion/alerts/';

/** A topic level for `value`: `/`, `+`, `#` and NUL would change the topic's meaning. */
export function topicLevel(value: string): string {
  return value.replace(/[/+#\u0000]/g, '_');
}

export function alertTopic(alert: Pick<DefenderAlert, 'rule' | 'identity'>): string {
  return `${ALERTS_TOPIC_PREFIX}${topicLevel(alert.rule)}/${topicLevel(alert.identity)}`;
}

export interface AlertPublisherOptions {
  settings: Pick<DetectSettings, 'webhook'>;
  logger: Logger;
  onWebhook: (alert: DefenderAlert, outcome: ActionOutcome) => void;
}

export class AlertPublisher implements AlertNotifier {
  private broker: Broker | null = null;
  private readonly pending = new Set<AbortController>();
  private stopped = false;

  constructor(private readonly opts: AlertPublisherOptions) {}

  attach(broker: Broker): void {
    this.broker = broker;
  }

  alarm(alert: DefenderAlert): void {
    this.send(alert, 'ALARM');
  }

  cleared(alert: DefenderAlert): void {
    this.send(alert, 'CLEAR');
  }

  private send(alert: DefenderAlert, state: 'ALARM' | 'CLEAR'): void {
    const body = JSON.stringify({ state, alert });
    const broker = this.broker;
    if (broker !== null && !broker.shuttingDown) {
      broker.publish({ topic: alertTopic(alert), payload: Buffer.from(body), qos: 1, retain: false, properties: { contentType: 'application/json' }, expiresAt: 0, origin: '' });
    }
    const webhook = this.opts.settings.webhook;
    if (webhook !== undefined && !this.stopped) void this.post(webhook, alert, body, state);
  }

  private async post(webhook: NonNullable<DetectSettings['webhook']>, alert: DefenderAlert, body: string, state: 'ALARM' | 'CLEAR'): Promise<void> {
    const controller = new AbortController();
    this.pending.add(controller);
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${webhook.timeoutMs} ms`)), webhook.timeoutMs);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const token = webhook.tokenEnv !== undefined ? process.env[webhook.tokenEnv] : undefined;
    if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`;
    let outcome: ActionOutcome;
    try {
      const res = await fetch(webhook.url, { method: 'POST', headers, body, signal: controller.signal, redirect: 'error' });
      await res.body?.cancel();
      outcome = res.ok ? { action: 'webhook', outcome: 'applied', detail: `${state} ${res.status}` } : { action: 'webhook', outcome: 'failed', detail: `${state}: HTTP ${res.status}` };
    } catch (err) {
      const cause = controller.signal.aborted ? controller.signal.reason : err;
      outcome = { action: 'webhook', outcome: 'failed', detail: `${state}: ${cause instanceof Error ? cause.message : String(cause)}` };
    } finally {
      clearTimeout(timer);
      this.pending.delete(controller);
    }
    if (outcome.outcome === 'failed') this.opts.logger.warn({ alertId: alert.id, detail: outcome.detail }, 'defender webhook failed');
    if (!this.stopped) this.opts.onWebhook(alert, outcome);
  }

  /** Aborts webhooks in flight (their outcomes are not recorded: the store is closing). */
  stop(): void {
    this.stopped = true;
    for (const c of this.pending) c.abort(new Error('broker stopping'));
    this.pending.clear();
  }
}
