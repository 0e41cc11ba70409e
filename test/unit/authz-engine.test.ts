/**
 * The rule engine without sockets: pattern expansion (and refusal of unsafe identity
 * values), deny beats allow, default deny, maxQos and retain, subscribe coverage,
 * bindings by every attribute, compile caching per client and rule-set version, explain
 * and lint on the default policy and on bad policies.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthorizedClient } from '../../src/broker/ports.js';
import type { PeerCertificate } from '../../src/broker/channel/connection-port.js';
import type { AclPolicy } from '../../src/core/authz-config.js';
import { authzSchema } from '../../src/core/authz-config.js';
import type { Logger } from '../../src/core/logger.js';
import { PolicyEngine } from '../../src/security/authz/engine.js';
import { allowAllPolicy, defaultDevicePolicy, policyFromConfig } from '../../src/security/authz/default-policy.js';
import { explain, formatExplanation } from '../../src/security/authz/explain.js';
import { globMatches, isSafeSubstitution } from '../../src/security/authz/identity-values.js';
import { lintPolicy } from '../../src/security/authz/lint.js';
import { filterCovers, filtersIntersect } from '../../src/security/authz/topic-cover.js';

function cert(cn: string, extra: Partial<PeerCertificate> = {}): PeerCertificate {
  return { commonName: cn, serialNumber: '0A1B', fingerprint256: 'AA', issuer: 'CN=CA', subject: `CN=${cn}`, organizationalUnits: [], sans: { dns: [], uri: [], ip: [], email: [] }, ...extra };
}

function client(clientId: string, opts: { cert?: PeerCertificate; username?: string; psk?: string } = {}): AuthorizedClient {
  const identity = {
    principal: opts.cert?.commonName ?? opts.username ?? opts.psk ?? null,
    method: opts.cert !== undefined ? ('certificate' as const) : opts.psk !== undefined ? ('psk' as const) : ('anonymous' as const),
    remoteAddress: '127.0.0.1',
    listener: 'test',
    ...(opts.cert !== undefined ? { certificate: opts.cert } : {}),
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.psk !== undefined ? { pskIdentity: opts.psk } : {}),
  };
  return { clientId, principal: identity.principal, identity };
}

function recordingLogger(): Logger & { warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  return { debug() {}, info() {}, error() {}, warn: (obj) => warnings.push(obj as Record<string, unknown>), warnings };
}

function policy(roles: Record<string, AclPolicy['roles'][number]['rules']>, bindings: AclPolicy['bindings']): AclPolicy {
  return { roles: Object.entries(roles).map(([name, rules]) => ({ name, source: 'config' as const, rules })), bindings };
}

describe('topic coverage', () => {
  test('filterCovers: every topic of the inner filter matches the outer one', () => {
    const cases: Array<[string, string, boolean]> = [
      ['devices/+/#', 'devices/a/temp', true],
      ['devices/+/#', 'devices/+/temp', true],
      ['devices/a/#', 'devices/a', true],
      ['devices/a/#', 'devices/#', false],
      ['devices/a/#', 'devices/+/x', false],
      ['#', '$SYS/broker', false], // a wildcard rule never reaches $ topics
      ['$SYS/#', '$SYS/broker/load', true],
      ['a/+', 'a/b/c', false],
    ];
    for (const [outer, inner, covers] of cases) assert.equal(filterCovers(outer, inner), covers, `${outer} covers ${inner}`);
  });
  test('filtersIntersect', () => {
    const cases: Array<[string, string, boolean]> = [
      ['devices/+/cmd', 'devices/x/#', true],
      ['a/b', 'a/c', false],
      ['a', 'a/#', true],
      ['#', '$SYS/x', false],
    ];
    for (const [a, b, meet] of cases) assert.equal(filtersIntersect(a, b), meet, `${a} meets ${b}`);
  });
});

describe('identity values', () => {
  test('unsafe substitutions: empty, +, #, /, NUL, control and C1 characters', () => {
    for (const bad of ['', '+', '#', 'a+b', 'a/b', 'x\u0000', 'tab\t', 'del\u007f', 'c1\u0085']) assert.equal(isSafeSubstitution(bad), false, JSON.stringify(bad));
    for (const good of ['device-1', 'ünï', 'a.b_c', 'urn:dev:1']) assert.equal(isSafeSubstitution(good), true, good);
  });
  test('globs: * is any run of characters', () => {
    const cases: Array<[string, string, boolean]> = [
      ['*', 'x', true],
      ['sensor-*', 'sensor-12', true],
      ['sensor-*', 'actuator-1', false],
      ['a*b*c', 'abc', true],
      ['a*b*c', 'acb', false],
      ['exact', 'exact', true],
      ['exact', 'exact2', false],
    ];
    for (const [glob, value, matches] of cases) assert.equal(globMatches(glob, value), matches, `${glob} ~ ${value}`);
  });
});

describe('the engine', () => {
  test('default device policy: own topics, broadcast read-only, nobody else\'s topics, default deny', () => {
    const engine = new PolicyEngine(defaultDevicePolicy());
    const d1 = client('c1', { cert: cert('dev1') });
    assert.equal(engine.authorizePublish(d1, 'devices/dev1/temp', 1, false).ok, true);
    assert.equal(engine.authorizeSubscribe(d1, 'devices/dev1/#', 1).ok, true);
    assert.equal(engine.authorizePublish(d1, 'devices/dev2/cmd', 0, false).ok, false);
    assert.equal(engine.authorizeSubscribe(d1, 'devices/+/temp', 0).ok, false);
    assert.equal(engine.authorizeSubscribe(d1, 'broadcast/#', 0).ok, true);
    assert.equal(engine.authorizePublish(d1, 'broadcast/all', 0, false).ok, false);
    assert.equal(engine.canReceive(d1, 'devices/dev2/temp'), false);
    assert.equal(engine.canReceive(d1, 'devices/dev1/cmd'), true);
    const denied = engine.decidePublish(d1, 'elsewhere', 0, false);
    assert.deepEqual([denied.allowed, denied.rule, denied.reason], [false, null, 'no rule matched (default deny)']);
    // Without a certificate there is no role at all.
    assert.equal(engine.authorizeSubscribe(client('anon'), 'broadcast/#', 0).ok, false);
  });

  test('operators (OU operators) read every device and $SYS, and write neither', () => {
    const engine = new PolicyEngine(defaultDevicePolicy());
    const op = client('op', { cert: cert('alice', { organizationalUnits: ['operators'] }) });
    assert.equal(engine.authorizeSubscribe(op, 'devices/+/#', 1).ok, true);
    assert.equal(engine.authorizeSubscribe(op, '$SYS/#', 0).ok, true);
    assert.equal(engine.authorizePublish(op, '$SYS/broker/x', 0, false).ok, false);
    assert.equal(engine.authorizePublish(op, 'devices/dev1/cmd', 0, false).ok, false);
  });

  test('SECURITY: a CN of +, #, a+b or with / never expands (the rule matches nothing) and is logged once', () => {
    const logger = recordingLogger();
    const engine = new PolicyEngine(defaultDevicePolicy(), logger);
    for (const cn of ['+', '#', 'a+b', 'x/y']) {
      const c = client(`c-${cn}`, { cert: cert(cn) });
      assert.equal(engine.authorizeSubscribe(c, 'devices/+/#', 0).ok, false, cn);
      assert.equal(engine.authorizeSubscribe(c, 'devices/#', 0).ok, false, cn);
      assert.equal(engine.authorizePublish(c, 'devices/other/cmd', 0, false).ok, false, cn);
      assert.equal(engine.canReceive(c, 'devices/other/cmd'), false, cn);
      // Rules without a variable still apply.
      assert.equal(engine.authorizeSubscribe(c, 'broadcast/#', 0).ok, true, cn);
    }
    assert.equal(logger.warnings.length, 4, 'one warning per client, not per check');
    assert.equal(logger.warnings[0]!.variable, 'cert.cn');
  });

  test('deny beats allow whatever the order; a deny covering part of a filter withholds those topics at delivery', () => {
    const engine = new PolicyEngine(
      policy(
        { all: [{ effect: 'allow', action: 'all', topic: 'plant/#' }], block: [{ effect: 'deny', action: 'all', topic: 'plant/secret/#' }] },
        [
          { role: 'block', attribute: 'clientId', value: '*' },
          { role: 'all', attribute: 'clientId', value: '*' },
        ],
      ),
    );
    const c = client('c');
    assert.equal(engine.authorizePublish(c, 'plant/line1', 0, false).ok, true);
    const d = engine.decidePublish(c, 'plant/secret/key', 0, false);
    assert.deepEqual([d.allowed, d.rule?.role, d.rule?.index], [false, 'block', 0]);
    assert.equal(engine.authorizeSubscribe(c, 'plant/secret/#', 0).ok, false);
    assert.equal(engine.authorizeSubscribe(c, 'plant/#', 0).ok, true);
    assert.equal(engine.canReceive(c, 'plant/secret/key'), false);
    assert.equal(engine.canReceive(c, 'plant/line1'), true);
  });

  test('maxQos: publish above is refused (0x87 with a reason), subscribe granted lower; retain false refuses retained publishes', () => {
    const engine = new PolicyEngine(policy({ r: [{ effect: 'allow', action: 'all', topic: 'lim/#', maxQos: 1, retain: false }] }, [{ role: 'r', attribute: 'clientId', value: '*' }]));
    const c = client('c');
    assert.deepEqual(engine.authorizePublish(c, 'lim/a', 1, false), { ok: true });
    assert.deepEqual(engine.authorizePublish(c, 'lim/a', 2, false), { ok: false, reasonCode: 0x87, reason: 'QoS 2 above the maximum of 1 for this topic' });
    assert.deepEqual(engine.authorizePublish(c, 'lim/a', 0, true), { ok: false, reasonCode: 0x87, reason: 'retained messages are not allowed on this topic' });
    assert.deepEqual(engine.authorizeSubscribe(c, 'lim/#', 2), { ok: true, qos: 1 });
    assert.deepEqual(engine.authorizeSubscribe(c, 'lim/x', 0), { ok: true, qos: 0 });
  });

  test('the publish fast path (no verdict object) answers as the full decision does, for every rule shape', () => {
    const engine = new PolicyEngine(
      policy(
        {
          open: [{ effect: 'allow', action: 'all', topic: 'plant/#' }],
          capped: [{ effect: 'allow', action: 'publish', topic: 'plant/cap/+', maxQos: 1, retain: false }],
          read: [{ effect: 'allow', action: 'subscribe', topic: 'ro/#' }],
          block: [{ effect: 'deny', action: 'publish', topic: 'plant/secret/#' }],
          // Even a rule naming $SYS never lets a client publish there.
          sys: [{ effect: 'allow', action: 'all', topic: '$SYS/#' }],
        },
        ['block', 'capped', 'open', 'read', 'sys'].map((role) => ({ role, attribute: 'clientId' as const, value: '*' })),
      ),
    );
    const c = client('c');
    let allowed = 0;
    for (const topic of ['plant/a', 'plant/cap/x', 'plant/secret/k', 'ro/x', 'other', '$SYS/x'])
      for (const qos of [0, 1, 2] as const)
        for (const retain of [false, true]) {
          const fast = engine.authorizePublish(c, topic, qos, retain);
          const full = engine.decidePublish(c, topic, qos, retain);
          assert.equal(fast.ok, full.allowed, `${topic} qos ${qos} retain ${retain}`);
          if (!fast.ok) assert.equal(fast.reason, full.reason);
          if (fast.ok) allowed++;
        }
    assert.equal(allowed, 12, 'plant/a and plant/cap/x at every QoS and retain flag: the open role allows what capped does not');
  });

  test('bindings by client id glob, username, OU, SAN URI/DNS and PSK identity; every pattern variable', () => {
    const rules = (topic: string): AclPolicy['roles'][number]['rules'] => [{ effect: 'allow', action: 'publish', topic }];
    const engine = new PolicyEngine(
      policy(
        {
          byId: rules('id/${clientId}'),
          byUser: rules('user/${username}'),
          byOu: rules('ou/${cert.ou}'),
          byUri: rules('uri/${cert.san.uri}'),
          byDns: rules('dns/${cert.san.dns}'),
          byPsk: rules('psk/only'),
          bySerial: rules('serial/${cert.serial}'),
        },
        [
          { role: 'byId', attribute: 'clientId', value: 'sensor-*' },
          { role: 'byUser', attribute: 'username', value: 'alice' },
          { role: 'byOu', attribute: 'cert.ou', value: 'plant-*' },
          { role: 'byUri', attribute: 'cert.san.uri', value: 'urn:dev:*' },
          { role: 'byDns', attribute: 'cert.san.dns', value: '*.devices.example' },
          { role: 'byPsk', attribute: 'psk', value: 'gw-1' },
          { role: 'bySerial', attribute: 'cert.cn', value: 'serial-dev' },
        ],
      ),
    );
    assert.equal(engine.authorizePublish(client('sensor-7'), 'id/sensor-7', 0, false).ok, true);
    assert.equal(engine.authorizePublish(client('sensor-7'), 'id/sensor-8', 0, false).ok, false);
    assert.equal(engine.authorizePublish(client('other'), 'id/other', 0, false).ok, false, 'not bound');
    assert.equal(engine.authorizePublish(client('x', { username: 'alice' }), 'user/alice', 0, false).ok, true);
    assert.equal(engine.authorizePublish(client('x', { username: 'bob' }), 'user/bob', 0, false).ok, false);
    const multi = client('m', { cert: cert('m', { organizationalUnits: ['plant-a', 'plant-b'], sans: { dns: ['m.devices.example'], uri: ['urn:dev:m'], ip: [], email: [] } }) });
    assert.equal(engine.authorizePublish(multi, 'ou/plant-b', 0, false).ok, true);
    assert.equal(engine.authorizePublish(multi, 'ou/plant-c', 0, false).ok, false);
    assert.equal(engine.authorizePublish(multi, 'uri/urn:dev:m', 0, false).ok, true);
    assert.equal(engine.authorizePublish(multi, 'dns/m.devices.example', 0, false).ok, true);
    assert.equal(engine.authorizePublish(client('g', { psk: 'gw-1' }), 'psk/only', 0, false).ok, true);
    assert.equal(engine.authorizePublish(client('g', { psk: 'gw-2' }), 'psk/only', 0, false).ok, false);
    assert.equal(engine.authorizePublish(client('s', { cert: cert('serial-dev') }), 'serial/0A1B', 0, false).ok, true);
  });

  test('a new rule set applies to clients whose rules were compiled before (cache keyed by version)', () => {
    const engine = new PolicyEngine(allowAllPolicy());
    const c = client('c');
    assert.equal(engine.canReceive(c, 'a/b'), true);
    engine.setPolicy(policy({}, []));
    assert.equal(engine.canReceive(c, 'a/b'), false);
  });

  test('allow-all never reaches $ topics; a config without authz means the device policy', () => {
    const engine = new PolicyEngine(policyFromConfig(authzSchema.parse({ policy: 'allow-all-INSECURE' })));
    assert.equal(engine.authorizePublish(client('c'), 'any/topic', 2, true).ok, true);
    assert.equal(engine.authorizeSubscribe(client('c'), '$SYS/#', 0).ok, false);
    assert.deepEqual(policyFromConfig(undefined), defaultDevicePolicy());
  });

  test('the config schema refuses a binding to an unknown role and a bad action', () => {
    assert.equal(authzSchema.safeParse({ roles: {}, bindings: [{ role: 'x', attribute: 'clientId', value: '*' }] }).success, false);
    assert.equal(authzSchema.safeParse({ roles: { r: { rules: [{ effect: 'allow', action: 'read', topic: '#' }] } } }).success, false);
  });
});

describe('explain and lint', () => {
  test('explain names the deciding rule, or says default deny', () => {
    const p = defaultDevicePolicy();
    const allowed = explain(p, { clientId: 'd', certificate: cert('device-demo'), action: 'publish', topic: 'devices/device-demo/temp' });
    assert.deepEqual(allowed.rule, { role: 'device', index: 0, text: 'allow all devices/${cert.cn}/#' });
    assert.equal(allowed.decision, 'allow');
    const denied = explain(p, { clientId: 'd', certificate: cert('device-demo'), action: 'publish', topic: 'devices/device-2/cmd' });
    assert.equal(formatExplanation(denied), 'DENY publish devices/device-2/cmd\n  no rule matched (default deny)\n  roles: device\n  quota: limits.client (no role with a quota is bound)\n');
    assert.throws(() => explain(p, { clientId: 'd', action: 'publish', topic: 'a/+' }), /not a valid topic name/);
  });

  test('lint: the default policy is clean', () => {
    assert.deepEqual(lintPolicy(defaultDevicePolicy()), []);
  });

  test('lint: too broad, $SYS write, cross-device publish, shadowed, invalid and unbound rules', () => {
    const findings = lintPolicy(
      policy(
        {
          device: [
            { effect: 'allow', action: 'all', topic: '#' },
            { effect: 'allow', action: 'publish', topic: 'devices/+/cmd' },
            { effect: 'allow', action: 'publish', topic: '$SYS/x' },
            { effect: 'allow', action: 'publish', topic: 'secret/a' },
            { effect: 'deny', action: 'all', topic: 'secret/#' },
            { effect: 'allow', action: 'subscribe', topic: 'a/#/b' },
            { effect: 'allow', action: 'subscribe', topic: 'x/${nope}' },
            { effect: 'allow', action: 'subscribe', topic: 'peers/+/state' },
          ],
          orphan: [],
        },
        [{ role: 'device', attribute: 'cert.cn', value: '*' }],
      ),
    );
    const brief = findings.map((f) => `${f.severity} ${f.role}#${f.index}: ${f.message.split(':')[0]}`);
    assert.deepEqual(brief, [
      'error device#0: too broad for a role bound to devices',
      "warning device#1: lets one device publish to another's topics",
      'error device#2: write access to $SYS topics',
      'warning device#3: can never match',
      'error device#5: can never match',
      'error device#6: can never match',
      "warning device#7: lets one device read another's topics",
      'warning orphan#null: bound to no identity',
    ]);
  });
});
