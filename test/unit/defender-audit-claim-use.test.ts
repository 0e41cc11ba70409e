/**
 * The pure check "claim credentials used outside provisioning" (defender/audit/claim-use.ts):
 * one high finding per claim that was refused outside `$bastion/provision/`, naming the claim
 * serial, the count, the topics and the client, with the revoke command as the fix; one more
 * when refusals could not be attributed. The counting over a real broker is in
 * test/integration/defender-audits-live.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildReport, claimUseFindings, formatReport } from '../../src/defender/audit/index.js';

const use = {
  serialNumber: '5A0B12',
  commonName: 'claim-sensor-0a1b2c3d',
  count: 3,
  topics: ['devices/sensor-1/telemetry', 'devices/#'],
  clientId: 'sensor-1',
  remoteAddress: '127.0.0.1:50000',
  firstAt: new Date('2026-06-01T00:00:00Z'),
  lastAt: new Date('2026-06-01T00:00:30Z'),
};

test('no refusal counted: no finding', () => {
  assert.deepEqual(claimUseFindings({ claims: [], untracked: 0 }), []);
});

test('a claim refused outside provisioning: one high finding with the serial, the count, the topics and the revoke command', () => {
  const [f, ...rest] = claimUseFindings({ claims: [use], untracked: 0 });
  assert.equal(rest.length, 0);
  assert.equal(f!.check, 'claim-used-outside-provisioning');
  assert.equal(f!.severity, 'high');
  assert.equal(f!.subject, '5A0B12');
  assert.match(f!.message, /refused 3 time\(s\)/);
  assert.match(f!.message, /devices\/sensor-1\/telemetry, devices\/#/);
  assert.match(f!.message, /client sensor-1 from 127\.0\.0\.1:50000/);
  assert.match(f!.fix, /bastion provision claim revoke 5A0B12/);
});

test('refusals past the table bound are still reported, as one finding about untracked claims', () => {
  const findings = claimUseFindings({ claims: [use, { ...use, serialNumber: '77' }], untracked: 9 });
  assert.deepEqual(
    findings.map((f) => `${f.check}:${f.severity}:${f.subject}`),
    ['claim-used-outside-provisioning:high:5A0B12', 'claim-used-outside-provisioning:high:77', 'claim-used-outside-provisioning:high:*'],
  );
  assert.match(findings[2]!.message, /^9 more refusal/);
});

test('a topic with control characters cannot forge a line of the text report', () => {
  const report = buildReport(claimUseFindings({ claims: [{ ...use, topics: ['a\nCRITICAL fake-check  x: y'] }], untracked: 0 }), use.lastAt);
  const text = formatReport(report);
  assert.equal(text.split('\n').filter((l) => l.startsWith('CRITICAL')).length, 0);
  assert.equal(report.counts.high, 1);
});
