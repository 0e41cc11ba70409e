/**
 * The $SYS publisher on a broker with a manual clock: Mosquitto's names and formats, load
 * averages as exponentially weighted per-minute rates (values checked against the
 * formula), only changed values published again (all of them when retained messages are
 * off), nothing after stop(); and the fixed
 * vocabulary TLS handshake failures are counted under in the metrics.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Broker } from '../../src/broker/broker.js';
import type { Message } from '../../src/broker/message.js';
import { SysTopics } from '../../src/broker/sys/sys-topics.js';
import type { Clock, TimerHandle } from '../../src/core/clock.js';
import { defaultMqttConfig } from '../../src/core/config.js';
import { DefaultAuthorizer } from '../../src/security/authz/default-authorizer.js';
import { ListenerAuthenticator } from '../../src/security/authn/listener-authenticator.js';
import { tlsFailureReason } from '../../src/admin/metrics/tls-failure-reason.js';

class ManualClock implements Clock {
  private t = 1_700_000_000_000;
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.live && x.at <= this.t);
    this.timers = this.timers.filter((x) => !due.includes(x));
    for (const x of due) x.fn();
  }
}

function setup(): { broker: Broker; clock: ManualClock; sys: SysTopics; value: (name: string) => string | undefined } {
  const clock = new ManualClock();
  const broker = new Broker({ authenticator: new ListenerAuthenticator(), authorizer: new DefaultAuthorizer(), clock });
  const sys = new SysTopics({ broker, intervalSeconds: 60, version: 'bastion version 9.9.9', heapBytes: () => 1234 });
  const value = (name: string): string | undefined => {
    const [m] = broker.retained.match(`$SYS/broker/${name}`) as Message[];
    return m?.payload.toString();
  };
  return { broker, clock, sys, value };
}

describe('$SYS publisher', () => {
  test('the first values at start, retained, with Mosquitto names and formats', () => {
    const { sys, value } = setup();
    sys.start();
    assert.equal(value('version'), 'bastion version 9.9.9');
    assert.equal(value('uptime'), '0 seconds');
    assert.equal(value('clients/connected'), '0');
    // Counted before this tick's own messages were retained.
    assert.equal(value('retained messages/count'), '0');
    assert.equal(value('heap/current'), '1234');
    assert.equal(value('load/messages/received/1min'), '0.00');
    assert.equal(value('load/connections/15min'), '0.00');
    sys.stop();
  });

  test('load averages: a per-minute rate folded in with weight 1 - exp(-elapsed/window)', () => {
    const { broker, clock, sys, value } = setup();
    sys.start();
    broker.counters.received[0] += 400;
    broker.counters.received[1] += 200;
    clock.advance(60_000);
    // 600 messages in one minute: 600/min, folded into averages that were 0.
    const expected = (windowSeconds: number): string => (600 * (1 - Math.exp(-60 / windowSeconds))).toFixed(2);
    assert.equal(value('load/messages/received/1min'), expected(60));
    assert.equal(value('load/messages/received/5min'), expected(300));
    assert.equal(value('load/messages/received/15min'), expected(900));
    assert.equal(value('messages/received'), '600');
    assert.equal(value('uptime'), '60 seconds');
    // A quiet minute: each average decays by exp(-60/window).
    clock.advance(60_000);
    assert.equal(value('load/messages/received/1min'), (600 * (1 - Math.exp(-1)) * Math.exp(-1)).toFixed(2));
    sys.stop();
  });

  test('only changed values are published again; nothing after stop()', () => {
    const { broker, clock, sys } = setup();
    sys.start();
    clock.advance(60_000);
    const before = broker.counters.published;
    clock.advance(60_000);
    // Nothing happened: only the uptime changed.
    assert.equal(broker.counters.published - before, 1);
    sys.stop();
    const stopped = broker.counters.published;
    clock.advance(600_000);
    assert.equal(broker.counters.published, stopped);
  });

  test('with retained messages off (mqtt.retainAvailable false), every value goes out every interval', () => {
    const clock = new ManualClock();
    const broker = new Broker({ authenticator: new ListenerAuthenticator(), authorizer: new DefaultAuthorizer(), clock, mqtt: defaultMqttConfig({ retainAvailable: false }) });
    const sys = new SysTopics({ broker, intervalSeconds: 60, version: 'bastion version 9.9.9' });
    sys.start();
    const perTick = broker.counters.published;
    assert.ok(perTick > 20, `${perTick} values at start`);
    clock.advance(60_000);
    assert.equal(broker.counters.published, 2 * perTick, 'the unchanged ones too');
    assert.equal(broker.retained.size, 0);
    sys.stop();
  });
});

describe('TLS failure reasons as label values', () => {
  test('OpenSSL and Node texts map to a fixed vocabulary; anything else is "other"', () => {
    const cases: Array<[string | undefined, string]> = [
      ['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: error:0A0000C7:SSL routines::peer did not return a certificate', 'no_certificate'],
      ['no client certificate', 'no_certificate'],
      ['unable to get local issuer certificate', 'unknown_ca'],
      ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: tlsv1 alert unknown ca', 'unknown_ca'],
      ['certificate has expired', 'certificate_expired'],
      ['certificate revoked', 'certificate_revoked'],
      ['ERR_SSL_WRONG_VERSION_NUMBER: wrong version number', 'not_tls'],
      ['ERR_SSL_HTTP_REQUEST: http request', 'not_tls'],
      ['ERR_SSL_UNSUPPORTED_PROTOCOL: unsupported protocol', 'protocol_version'],
      ['ERR_SSL_NO_SHARED_CIPHER: no shared cipher', 'no_shared_cipher'],
      ['ECONNRESET: socket hang up', 'peer_closed'],
      ['\u0000weird text a scanner chose', 'other'],
      [undefined, 'other'],
    ];
    for (const [message, reason] of cases) assert.equal(tlsFailureReason(message), reason, String(message));
  });
});
