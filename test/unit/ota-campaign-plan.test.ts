/**
 * Campaign plans (issue 14): the --rollout and --abort parsers with their refusals, the
 * devices per stage, the abort rule's arithmetic, the stable rollout order, and target
 * resolution from ACL bindings and PKI certificates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BastionError } from '../../src/core/errors.js';
import { abortReason, EXPONENTIAL, parseAbortRule, parseRollout, rolloutOrder, stagePlan } from '../../src/ota/campaigns/plan.js';
import { globMatches, resolveTarget, type TargetBinding, type TargetCertificate } from '../../src/ota/campaigns/target-resolver.js';

const refused = (re: RegExp) => (err: unknown): boolean => err instanceof BastionError && err.code === 'ERR_USAGE' && re.test(err.message) && !err.message.includes('\n');

test('--rollout: cumulative percentages, exponential, and one-line refusals', () => {
  assert.deepEqual(parseRollout('10%,50%,100%'), [10, 50, 100]);
  assert.deepEqual(parseRollout(' 0.5%, 2.25% ,100% '), [0.5, 2.25, 100]);
  assert.deepEqual(parseRollout('100%'), [100]);
  assert.deepEqual(parseRollout('exponential'), [1, 2, 4, 8, 16, 32, 64, 100]);
  assert.deepEqual(EXPONENTIAL, [1, 2, 4, 8, 16, 32, 64, 100]);
  assert.throws(() => parseRollout('10,50,100'), refused(/not a percentage/));
  assert.throws(() => parseRollout('10%,50%'), refused(/must end at 100%/));
  assert.throws(() => parseRollout('50%,10%,100%'), refused(/must increase/));
  assert.throws(() => parseRollout('10%,10%,100%'), refused(/must increase/));
  assert.throws(() => parseRollout('0%,100%'), refused(/above 0%/));
  assert.throws(() => parseRollout('10%,150%'), refused(/at most 100%/));
  assert.throws(() => parseRollout(''), refused(/not a percentage/));
  assert.throws(() => parseRollout('linear'), refused(/not a percentage/));
  assert.throws(() => parseRollout(Array.from({ length: 21 }, (_, i) => `${i + 1}%`).join(',')), refused(/at most 20 stages/));
});

test('stage plan: ceil of the percentage, at least one device, a stage adding nobody merged', () => {
  assert.deepEqual(stagePlan([10, 50, 100], 50), { percents: [10, 50, 100], counts: [5, 25, 50] });
  assert.deepEqual(stagePlan([10, 50, 100], 7), { percents: [10, 50, 100], counts: [1, 4, 7] });
  assert.deepEqual(stagePlan(EXPONENTIAL, 1000), { percents: [...EXPONENTIAL], counts: [10, 20, 40, 80, 160, 320, 640, 1000] });
  // 50 devices: 1% and 2% both round up to 1 device; the two are one stage (up to 2%).
  assert.deepEqual(stagePlan(EXPONENTIAL, 50), { percents: [2, 4, 8, 16, 32, 64, 100], counts: [1, 2, 4, 8, 16, 32, 50] });
  assert.deepEqual(stagePlan([10, 50, 100], 1), { percents: [100], counts: [1] });
  assert.deepEqual(stagePlan([33.33, 100], 3), { percents: [33.33, 100], counts: [1, 3] });
});

test('--abort: percentages after N, counts, >=; the arithmetic; refusals', () => {
  const r = parseAbortRule('failed>5% after 20');
  assert.deepEqual(r, { text: 'failed>5% after 20', op: '>', kind: 'percent', value: 5, after: 20 });
  assert.equal(abortReason(r, 19, 19), null, 'not evaluated before 20 devices are terminal');
  assert.equal(abortReason(r, 1, 20), null, '5% is not above 5%');
  assert.match(abortReason(r, 2, 20) ?? '', /failed>5% after 20: 2 of 20 terminal device\(s\) failed \(10%\)/);
  const c = parseAbortRule(' failed >= 3 ');
  assert.deepEqual(c, { text: 'failed>=3', op: '>=', kind: 'count', value: 3, after: 1 });
  assert.equal(abortReason(c, 2, 100), null);
  assert.ok(abortReason(c, 3, 3) !== null);
  assert.equal(abortReason(parseAbortRule('failed>0%'), 0, 10), null);
  assert.ok(abortReason(parseAbortRule('failed>0%'), 1, 10) !== null);
  assert.throws(() => parseAbortRule('errors>5%'), refused(/--abort takes a rule/));
  assert.throws(() => parseAbortRule('failed>5% after'), refused(/--abort takes a rule/));
  assert.throws(() => parseAbortRule('failed>100%'), refused(/can never trip/));
  assert.throws(() => parseAbortRule('failed>=120%'), refused(/above 100%/));
  assert.throws(() => parseAbortRule('failed>2.5'), refused(/whole number/));
  assert.throws(() => parseAbortRule('failed>=0'), refused(/at once/));
  assert.throws(() => parseAbortRule('failed>5% after 0'), refused(/at least 1/));
});

test('rollout order: the same for the same campaign id and any input order, different per id, not alphabetical', () => {
  const ids = Array.from({ length: 50 }, (_, i) => `dev-${String(i).padStart(2, '0')}`);
  const a = rolloutOrder(ids, 'cmp-1');
  assert.deepEqual(rolloutOrder([...ids].reverse(), 'cmp-1'), a);
  assert.deepEqual([...a].sort(), ids);
  assert.notDeepEqual(a.slice(0, 5), ids.slice(0, 5));
  assert.notDeepEqual(rolloutOrder(ids, 'cmp-2'), a);
  assert.deepEqual(rolloutOrder(['x', 'x', 'y'], 's').sort(), ['x', 'y']);
});

const DAY = 86_400_000;
const NOW = 1_800_000_000_000;
const certs: TargetCertificate[] = [
  { commonName: 'th-1', organizationalUnits: ['thermo'], revoked: false, notAfter: NOW + DAY },
  { commonName: 'th-2', organizationalUnits: ['thermo', 'lab'], revoked: false, notAfter: NOW + DAY },
  { commonName: 'th-old', organizationalUnits: ['thermo'], revoked: false, notAfter: NOW - 1 },
  { commonName: 'th-revoked', organizationalUnits: ['thermo'], revoked: true, notAfter: NOW + DAY },
  { commonName: 'cam-1', organizationalUnits: ['cameras'], revoked: false, notAfter: NOW + DAY },
];
const bindings: TargetBinding[] = [
  { role: 'sensor', attribute: 'cert.cn', value: 'sensor-A1' },
  { role: 'sensor', attribute: 'clientId', value: 'sensor-B2' },
  { role: 'sensor', attribute: 'cert.ou', value: 'lab' },
  { role: 'sensor', attribute: 'username', value: 'alice' },
  { role: 'cams', attribute: 'cert.cn', value: 'cam-*' },
  { role: 'ops', attribute: 'psk', value: 'x' },
];
const sources = { bindings: () => bindings, clientCertificates: () => certs };

test('targets: clients, cert.ou (valid unrevoked unexpired only), role (exact bindings, globs and OUs over the PKI); empty refused', () => {
  assert.deepEqual(resolveTarget('clients:b, a,b', sources, NOW).identities, ['a', 'b']);
  assert.deepEqual(resolveTarget('cert.ou:thermo', sources, NOW).identities, ['th-1', 'th-2']);
  const role = resolveTarget('role:sensor', sources, NOW);
  assert.deepEqual(role.identities, ['sensor-A1', 'sensor-B2', 'th-2']);
  assert.ok(role.notes.some((n) => /username=alice/.test(n)));
  assert.deepEqual(resolveTarget('role:cams', sources, NOW).identities, ['cam-1']);
  assert.throws(() => resolveTarget('role:ops', sources, NOW), refused(/names no device/));
  assert.throws(() => resolveTarget('role:nobody', sources, NOW), refused(/names no device \(role nobody has no bindings\)/));
  assert.throws(() => resolveTarget('cert.ou:none', sources, NOW), refused(/names no device/));
  assert.throws(() => resolveTarget('clients:a/b', sources, NOW), refused(/cannot be a device identity/));
  assert.throws(() => resolveTarget('clients:,', sources, NOW), refused(/names no device/));
  assert.throws(() => resolveTarget('group:x', sources, NOW), refused(/--target is role:NAME/));
  assert.equal(globMatches('cam-*', 'cam-1'), true);
  assert.equal(globMatches('cam-*', 'xcam-1'), false);
  assert.equal(globMatches('a.b', 'axb'), false, 'a dot is literal');
});
