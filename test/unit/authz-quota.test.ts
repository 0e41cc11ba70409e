/**
 * Per-role quotas, pure: the config schema (burst defaults to twice the rate, an empty
 * quota is refused), binding specificity (exact identity > OU > pattern > limits.client;
 * ties go to the binding listed first), the engine's quota for a client (role fields over
 * limits.client, field by field) and what explain says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerCertificate } from '../../src/broker/channel/connection-port.js';
import type { AuthorizedClient } from '../../src/broker/ports.js';
import { authzSchema, type AclPolicy } from '../../src/core/authz-config.js';
import { limitsSchema } from '../../src/core/limits-config.js';
import { policyFromConfig } from '../../src/security/authz/default-policy.js';
import { PolicyEngine } from '../../src/security/authz/engine.js';
import { explain, formatExplanation } from '../../src/security/authz/explain.js';
import { chooseQuota } from '../../src/security/authz/quota.js';

const cert = (cn: string, ous: string[] = []): PeerCertificate => ({ commonName: cn, organizationalUnits: ous, serialNumber: '01', fingerprint256: '', issuer: 'CN=ca', subject: `CN=${cn}`, sans: { dns: [], uri: [], ip: [], email: [] } });
const certClient = (cn: string, ous: string[] = []): AuthorizedClient => ({ clientId: cn, principal: cn, identity: { principal: cn, method: 'certificate', certificate: cert(cn, ous), remoteAddress: '127.0.0.1', listener: 'l' } });

const ALL = [{ effect: 'allow' as const, action: 'all' as const, topic: '#' }];
function fleetPolicy(extraBindings: Array<{ role: string; attribute: string; value: string }> = []): AclPolicy {
  return policyFromConfig(
    authzSchema.parse({
      roles: {
        device: { rules: ALL },
        fleet: { rules: ALL, quota: { publishRate: { perSecond: 5000 } } },
        gateway: { rules: ALL, quota: { publishRate: { perSecond: 20000, burst: 20000 } } },
        loose: { rules: ALL, quota: { bandwidth: { perSecond: 1 } } },
      },
      bindings: [
        { role: 'device', attribute: 'cert.cn', value: '*' },
        { role: 'loose', attribute: 'cert.cn', value: 'gw*' },
        { role: 'fleet', attribute: 'cert.ou', value: 'gateways' },
        ...extraBindings,
      ],
    }),
  );
}

test('schema: a quota sets a rate; burst defaults to twice the rate; an empty or unknown field is refused', () => {
  const parsed = authzSchema.parse({ roles: { g: { rules: [], quota: { publishRate: { perSecond: 300 } } } } });
  assert.deepEqual(parsed.roles.g!.quota, { publishRate: { perSecond: 300, burst: 600 } });
  assert.equal(authzSchema.safeParse({ roles: { g: { rules: [], quota: {} } } }).success, false);
  assert.equal(authzSchema.safeParse({ roles: { g: { rules: [], quota: { maxRate: 5 } } } }).success, false);
  assert.equal(authzSchema.safeParse({ roles: { g: { rules: [], quota: { publishRate: { perSecond: -1 } } } } }).success, false);
});

test('specificity: an exact identity binding beats an OU binding, which beats a pattern; no quota role bound: limits.client', () => {
  const p = fleetPolicy([{ role: 'gateway', attribute: 'cert.cn', value: 'gw1' }]);
  assert.deepEqual(
    (({ role, specificity, binding }) => ({ role, specificity, binding }))(chooseQuota(p, certClient('gw1', ['gateways']))!),
    { role: 'gateway', specificity: 'identity', binding: { role: 'gateway', attribute: 'cert.cn', value: 'gw1' } },
  );
  assert.equal(chooseQuota(p, certClient('gw2', ['gateways']))?.role, 'fleet', 'OU beats the gw* pattern');
  assert.equal(chooseQuota(p, certClient('gw3'))?.role, 'loose', 'only the pattern applies');
  assert.equal(chooseQuota(p, certClient('sensor-9')), null, 'the device role has no quota: limits.client');
  // Order does not matter across specificities (the exact binding listed last still wins) ...
  assert.equal(chooseQuota(fleetPolicy([{ role: 'gateway', attribute: 'clientId', value: 'gw1' }]), certClient('gw1', ['gateways']))?.role, 'gateway');
  // ... and within one specificity the binding listed first wins.
  const tie = fleetPolicy([
    { role: 'gateway', attribute: 'cert.ou', value: 'big' },
    { role: 'fleet', attribute: 'cert.ou', value: 'gateways' },
  ]);
  assert.equal(chooseQuota(tie, certClient('x', ['big', 'gateways']))?.role, 'fleet', 'fleet/gateways is listed before gateway/big');
});

test("the engine builds the client's quota from its role, limits.client filling the fields the role leaves out", () => {
  const defaults = limitsSchema.parse({}).client;
  const engine = new PolicyEngine(fleetPolicy([{ role: 'gateway', attribute: 'cert.cn', value: 'gw1' }]));
  assert.equal(engine.clientQuota(certClient('sensor-1'), defaults, 0), undefined, 'no role quota: the broker-wide one applies');
  const gw = engine.clientQuota(certClient('gw1'), defaults, 0)!.publish;
  let passed = 0;
  while (passed < 30_000 && gw.take(0, 10) === null) passed++;
  assert.equal(passed, 20_000, 'the gateway burst, at one instant');
  const loose = engine.clientQuota(certClient('gw3'), defaults, 0)!.publish;
  assert.equal(loose.take(0, 1), null);
  assert.equal(loose.take(0, 2), 'bandwidth', 'its own bandwidth (1 B/s, burst 2)');
});

test('explain shows the quota and the role and binding that gave it (JSON and text)', () => {
  const p = fleetPolicy([{ role: 'gateway', attribute: 'cert.cn', value: 'gw1' }]);
  const gw = explain(p, { clientId: 'gw1', certificate: cert('gw1', ['gateways']), action: 'publish', topic: 'plant/line1' });
  assert.deepEqual(gw.quota, {
    role: 'gateway',
    binding: { role: 'gateway', attribute: 'cert.cn', value: 'gw1' },
    specificity: 'identity',
    publishRate: { perSecond: 20000, burst: 20000 },
    bandwidth: null,
    maxSubscriptions: null,
    maxQueued: null,
  });
  assert.match(
    formatExplanation(gw),
    /\n {2}quota: role "gateway" via binding cert\.cn=gw1 \(identity\): publishRate 20000 msg\/s \(burst 20000\), bandwidth limits\.client, maxSubscriptions limits\.client, maxQueued mqtt\.maxQueued\n$/,
  );
  const dev = explain(p, { clientId: 's', certificate: cert('sensor-1'), action: 'publish', topic: 'plant/line1' });
  assert.equal(dev.quota.role, null);
  assert.match(formatExplanation(dev), /\n {2}quota: limits\.client \(no role with a quota is bound\)\n$/);
});
