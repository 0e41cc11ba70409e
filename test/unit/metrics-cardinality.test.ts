/**
 * The event-counted metrics keep a bounded number of series whatever clients do: a flood of
 * auth failures under made-up provider names, TLS failures with peer-dependent texts, and
 * limit hits and denials from many client ids and topics. Label names come from a fixed
 * set, provider names past the cap count as "other", TLS failures map to the fixed
 * vocabulary, and no client id or topic ever becomes a label value.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { EventMetrics } from '../../src/admin/metrics/event-metrics.js';
import { TLS_FAILURE_REASONS } from '../../src/admin/metrics/tls-failure-reason.js';
import { SecurityEvents } from '../../src/core/security-events.js';
import { parseExposition } from '../helpers/prom-text.js';

const LABEL_NAMES = new Set(['stage', 'provider', 'action', 'limit', 'origin', 'listener', 'kind', 'reason', 'group']);

test('a flood of distinct clients, providers and TLS errors keeps every family to a bounded set of series', async () => {
  const registry = new Registry();
  const events = new SecurityEvents();
  const metrics = new EventMetrics(registry, events);
  metrics.declareTlsListener('mqtts', ['X25519MLKEM768', 'X25519']);
  const n = 500;
  for (let i = 0; i < n; i++) {
    const clientId = `device-${i}`;
    events.emit({ type: 'auth.failure', listener: 'mqtts', remoteAddress: `10.0.${i >> 8}.${i & 255}`, clientId, provider: `method-${i}`, reasonCode: 0x86, reason: 'bad' });
    events.emit({ type: 'auth.failure', listener: 'mqtts', remoteAddress: '10.0.0.1', clientId, provider: `odd name "${i}"\n`, reasonCode: 0x86, reason: 'bad' });
    events.emit({ type: 'tls.handshake', listener: 'mqtts', remoteAddress: '10.0.0.1', ok: false, resumed: false, reason: `SSL routine ${i}: peer sent garbage ${clientId}` });
    events.emit({ type: 'limit.hit', limit: 'publish-rate', listener: 'mqtts', remoteAddress: '10.0.0.1', clientId, action: 'dropped', count: 1 });
    events.emit({ type: 'authz.denied', clientId, principal: clientId, remoteAddress: '10.0.0.1', action: 'publish', topic: `devices/${clientId}/cmd`, reason: 'denied' });
  }
  const text = await registry.metrics();
  metrics.close();
  const families = parseExposition(text);
  for (const f of families.values()) {
    for (const s of f.samples) {
      for (const [name, value] of Object.entries(s.labels)) {
        assert.ok(LABEL_NAMES.has(name), `${f.name} has label ${name}`);
        assert.doesNotMatch(value, /device-\d/, `${f.name} ${name}="${value}" names a client`);
      }
    }
  }
  const series = (name: string): number => families.get(name)?.samples.length ?? 0;
  // 32 kept provider names plus "other"; every odd name counts as "other".
  assert.equal(series('bastion_auth_failures_total'), 33);
  const other = families.get('bastion_auth_failures_total')!.samples.find((s) => s.labels.provider === 'other');
  assert.equal(other?.value, 2 * n - 32);
  assert.ok(series('bastion_tls_handshake_failures_total') <= TLS_FAILURE_REASONS.length);
  assert.equal(series('bastion_limit_hits_total'), 1);
  assert.equal(series('bastion_authz_denials_total'), 1);
  assert.equal(series('bastion_tls_handshakes_total'), 4, 'full and resumed × the two offered groups, declared at 0');
  for (const f of families.values()) assert.ok(f.help !== undefined && f.help.length > 0, `${f.name} has HELP`);
});
