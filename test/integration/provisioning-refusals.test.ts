/**
 * Provisioning refusals over MQTT (issue 13, docs/PROVISIONING.md "Errors"), against a real
 * broker with the built-in PKI, MQTT.js over mqtts with real claim certificates and
 * one-time tokens: every bad request gets `…/rejected` with its status and error code and
 * one readable line, NOTHING is issued (the PKI inventory and the devices of
 * provisioning.db are counted before and after), and the refusal is audited (a
 * `provisioning` security event, outcome refused, with the error code).
 * Covered here: bad CSRs and keys, ownership tokens, templates, parameters, the allow-list,
 * the request rate, claim quotas and revocation, expired tokens, duplicates.
 * provisioning-refusals-access.test.ts covers the hook, the topic fence and renewal.
 *
 * No sleeps: every wait is on an answer or a packet, with a timeout.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { MqttClient } from 'mqtt';
import { createCsrWithKey } from '../../src/pki/index.js';
import { newSecret, secretHash } from '../../src/provisioning/secrets.js';
import { SENSOR_TEMPLATE, startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import {
  accepted,
  ask,
  assertRefusalAudited,
  assertRejected,
  createStep1,
  CSR_TOPIC,
  issuedCounts,
  provisionThrough,
  recordProvisioningEvents,
  registerTopic,
  withStore,
  type Answer,
  type ProvisioningEvent,
} from './provisioning-support.js';
import { withTimeout } from './support.js';

const execFileAsync = promisify(execFile);

const TEMPLATES = {
  sensor: SENSOR_TEMPLATE,
  other: { ...SENSOR_TEMPLATE, commonName: 'other-${serialNumber}' },
  listed: { ...SENSOR_TEMPLATE, commonName: 'listed-${serialNumber}', allowSerials: ['GOOD0001'] },
  long: { ...SENSOR_TEMPLATE, commonName: 'sensor-long-${serialNumber}', sans: [], parameters: { serialNumber: { pattern: '[A-Z0-9]{1,64}' } } },
  multi: {
    ...SENSOR_TEMPLATE,
    commonName: 'multi-${serialNumber}',
    parameters: { serialNumber: { pattern: '[A-Z0-9]{4,16}' }, site: { pattern: '[a-z]{2,8}', required: false } },
  },
};

type Requester = { client: MqttClient; clientId: string; serialNumber: string };

describe('provisioning refusals: nothing is issued, every refusal is audited', () => {
  let b: ProvisioningBroker;
  let rec: { events: ProvisioningEvent[]; stop: () => void };
  let tmp: string;
  const open: MqttClient[] = [];
  let seq = 0;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'bastion-refusals-'));
    b = await startProvisioningBroker({ templates: TEMPLATES, provisioning: { keyTypes: ['ec-p256'], ratePerMinute: 5 } });
    rec = recordProvisioningEvents(b);
  });
  after(async () => {
    rec.stop();
    for (const c of open) c.end(true);
    await b.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** A fresh claim for `template` (each has its own request quota), connected. */
  async function claimClient(template = 'sensor', o: { maxDevices?: number } = {}): Promise<Requester> {
    const claim = await b.claim(template, o);
    const clientId = `refusals-${++seq}`;
    const client = await b.connect({ clientId, cert: claim.cert, key: claim.key });
    open.push(client);
    return { client, clientId, serialNumber: claim.serialNumber };
  }

  async function tokenClient(template = 'sensor'): Promise<Requester> {
    const clientId = `refusals-token-${++seq}`;
    const client = await b.connect({ clientId, username: '$provision', password: b.token(template) });
    open.push(client);
    return { client, clientId, serialNumber: '' };
  }

  /** Asks, expects the refusal, checks that nothing was issued and that the refusal was audited. */
  async function expectRefused(r: Requester, topic: string, payload: Record<string, unknown> | string, statusCode: number, errorCode: string, action: ProvisioningEvent['action']): Promise<Answer> {
    const issued = await issuedCounts(b);
    const from = rec.events.length;
    const answer = await ask(r.client, topic, payload);
    assertRejected(answer, statusCode, errorCode);
    assert.deepEqual(await issuedCounts(b), issued, 'nothing issued');
    assertRefusalAudited(rec.events, from, r.clientId, errorCode, action);
    return answer;
  }

  async function opensslCsr(args: string[]): Promise<string> {
    const { stdout } = await execFileAsync('openssl', ['req', '-new', '-nodes', '-subj', '/CN=x', '-keyout', join(tmp, `key-${++seq}.pem`), ...args]);
    assert.match(stdout, /-----BEGIN CERTIFICATE REQUEST-----/);
    return stdout;
  }

  describe('the CSR and its key', () => {
    test('not PEM at all → InvalidCsr 400 (the clientToken is echoed)', async () => {
      const r = await claimClient();
      const a = await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: 'this is not a certificate request', clientToken: 'bad-1' }, 400, 'InvalidCsr', 'certificate');
      assert.equal(a.body.clientToken, 'bad-1');
    });

    test('PEM armour around garbage → InvalidCsr 400', async () => {
      const r = await claimClient();
      const garbage = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from('garbage, not DER at all '.repeat(8)).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: garbage }, 400, 'InvalidCsr', 'certificate');
    });

    test('a CSR whose signature does not verify (one byte of it flipped) → InvalidCsr 400', async () => {
      const r = await claimClient();
      const { csrPem } = await createCsrWithKey({ commonName: 'x' });
      const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
      // The signature BIT STRING ends the CSR: its last byte is the last byte of ECDSA's s.
      der[der.length - 1]! ^= 0x01;
      const flipped = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
      const a = await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: flipped }, 400, 'InvalidCsr', 'certificate');
      assert.match(String(a.body.errorMessage), /signature/);
    });

    test('an RSA 1024 key (openssl req) → WeakKey 400', async () => {
      const r = await claimClient();
      const csr = await opensslCsr(['-newkey', 'rsa:1024']);
      await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: csr }, 400, 'WeakKey', 'certificate');
    });

    test('an EC P-384 key when provisioning.keyTypes is [ec-p256] → WeakKey 400', async () => {
      const r = await claimClient();
      const { csrPem } = await createCsrWithKey({ commonName: 'x', keyAlgorithm: 'ec-p384' });
      const a = await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: csrPem }, 400, 'WeakKey', 'certificate');
      assert.match(String(a.body.errorMessage), /ec-p384/);
    });

    test('a CSR asking for a CA certificate (basicConstraints critical, CA:TRUE) → CaNotAllowed 400', async () => {
      const r = await claimClient();
      const csr = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-addext', 'basicConstraints=critical,CA:TRUE']);
      await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: csr }, 400, 'CaNotAllowed', 'certificate');
    });

    test('no CSR, or a CSR that is not a string → InvalidPayload 400', async () => {
      const r = await claimClient();
      await expectRefused(r, CSR_TOPIC, { clientToken: 'no-csr' }, 400, 'InvalidPayload', 'certificate');
      await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: 42 }, 400, 'InvalidPayload', 'certificate');
    });

    test(
      'a payload that is not JSON → InvalidPayload 400, audited like every refusal',
      async () => {
        const r = await claimClient();
        await expectRefused(r, CSR_TOPIC, '{"certificateSigningRequest": ', 400, 'InvalidPayload', 'certificate');
      },
    );
  });

  describe('ownership tokens', () => {
    test('a replayed ownership token: the second registration → InvalidToken 403', async () => {
      const r = await claimClient();
      const { token } = await createStep1(r.client);
      accepted(await ask(r.client, registerTopic('sensor'), { certificateOwnershipToken: token, parameters: { serialNumber: 'REPLAY01' } }));
      await expectRefused(r, registerTopic('sensor'), { certificateOwnershipToken: token, parameters: { serialNumber: 'REPLAY02' } }, 403, 'InvalidToken', 'register');
    });

    test('the ownership token of another claim → InvalidToken 403 (and it stays good for its own claim)', async () => {
      const owner = await claimClient();
      const thief = await claimClient();
      const { token } = await createStep1(owner.client);
      await expectRefused(thief, registerTopic('sensor'), { certificateOwnershipToken: token, parameters: { serialNumber: 'STOLEN01' } }, 403, 'InvalidToken', 'register');
      const ok = accepted(await ask(owner.client, registerTopic('sensor'), { certificateOwnershipToken: token, parameters: { serialNumber: 'STOLEN01' } }));
      assert.equal(ok.identity, 'sensor-STOLEN01');
    });

    test('an expired ownership token (recorded with expiresAt in the past) → InvalidToken 403', async () => {
      const r = await claimClient();
      const step1 = await createStep1(r.client);
      // The same step-1 certificate and CSR, under a second token that expired a minute ago.
      const expired = newSecret();
      withStore(b, (s) =>
        s.addOwnership(secretHash(expired), { certSerial: String(step1.created.certificateId), csrPem: step1.csrPem, claim: { kind: 'claim', serialNumber: r.serialNumber }, expiresAt: Date.now() - 60_000 }),
      );
      await expectRefused(r, registerTopic('sensor'), { certificateOwnershipToken: expired, parameters: { serialNumber: 'EXPIRED1' } }, 403, 'InvalidToken', 'register');
      accepted(await ask(r.client, registerTopic('sensor'), { certificateOwnershipToken: step1.token, parameters: { serialNumber: 'EXPIRED1' } }));
    });

    test('an ownership token nobody issued → InvalidToken 403', async () => {
      const r = await claimClient();
      await expectRefused(r, registerTopic('sensor'), { certificateOwnershipToken: newSecret(), parameters: { serialNumber: 'NOBODY01' } }, 403, 'InvalidToken', 'register');
    });
  });

  describe('templates', () => {
    test('a claim registering against another template → WrongTemplate 403', async () => {
      const r = await claimClient('sensor');
      const { token } = await createStep1(r.client);
      await expectRefused(r, registerTopic('other'), { certificateOwnershipToken: token, parameters: { serialNumber: 'WRONG001' } }, 403, 'WrongTemplate', 'register');
    });

    test('a one-time token registering against another template → WrongTemplate 403', async () => {
      const r = await tokenClient('sensor');
      const { token } = await createStep1(r.client);
      await expectRefused(r, registerTopic('other'), { certificateOwnershipToken: token, parameters: { serialNumber: 'WRONG002' } }, 403, 'WrongTemplate', 'register');
    });

    test('an unknown template → NotFound 404', async () => {
      const r = await claimClient();
      const { token } = await createStep1(r.client);
      await expectRefused(r, registerTopic('nope'), { certificateOwnershipToken: token, parameters: { serialNumber: 'NOPE0001' } }, 404, 'NotFound', 'register');
    });

    test('a claim whose template is not configured (any more) → NotFound 404 at step 1', async () => {
      const r = await claimClient('ghost');
      const { csrPem } = await createCsrWithKey({ commonName: 'x' });
      await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: csrPem }, 404, 'NotFound', 'certificate');
    });
  });

  describe('parameters (template multi: serialNumber [A-Z0-9]{4,16} required, site [a-z]{2,8} optional)', () => {
    const cases: Array<[string, unknown]> = [
      ['a value not matching its pattern', { serialNumber: 'abc1' }],
      ['a missing required parameter', { site: 'lab' }],
      ['no parameters at all', undefined],
      ['an unknown parameter', { serialNumber: 'ABCD0001', colour: 'red' }],
      ['an optional parameter not matching its pattern', { serialNumber: 'ABCD0002', site: 'LAB!' }],
      ['a path in the value (ABC/../x)', { serialNumber: 'ABC/../x' }],
      ['a placeholder in the value (A${x})', { serialNumber: 'A${x}' }],
      ['MQTT wildcards in the value (AB+#)', { serialNumber: 'AB+#' }],
      ['a 200-character value', { serialNumber: 'A'.repeat(200) }],
      ['a value that is not a string', { serialNumber: 12345678 }],
      ['parameters that are not an object', 'ABCD0003'],
      ['parameters as an array', ['ABCD0004']],
    ];
    for (const [label, parameters] of cases) {
      test(`${label} → InvalidParameters 400`, async () => {
        const r = await claimClient('multi');
        const { token } = await createStep1(r.client);
        await expectRefused(r, registerTopic('multi'), { certificateOwnershipToken: token, ...(parameters !== undefined ? { parameters } : {}) }, 400, 'InvalidParameters', 'register');
      });
    }

    for (const [name, raw] of [
      ['constructor', (token: string) => JSON.stringify({ certificateOwnershipToken: token, parameters: { serialNumber: 'PROTO001', constructor: 'x' } })],
      ['__proto__', (token: string) => `{"certificateOwnershipToken": ${JSON.stringify(token)}, "parameters": {"serialNumber": "PROTO002", "__proto__": "x"}}`],
    ] as const) {
      test(`an unknown parameter named ${name} (an Object.prototype member) → InvalidParameters 400`, async () => {
        const r = await claimClient('multi');
        const { token } = await createStep1(r.client);
        await expectRefused(r, registerTopic('multi'), raw(token), 400, 'InvalidParameters', 'register');
      });
    }
  });

  describe('an identity the CA cannot certify (template long: CN sensor-long-${serialNumber}, pattern [A-Z0-9]{1,64})', () => {
    // 'sensor-long-' + 60 characters: the pattern allows the value, X.509 does not allow a 72-character CN.
    const LONG = 'A'.repeat(60);

    test('by claim → InvalidParameters 400; the ownership token and the claim slot are not spent', async () => {
      const r = await claimClient('long', { maxDevices: 3 });
      const { token } = await createStep1(r.client);
      await expectRefused(r, registerTopic('long'), { certificateOwnershipToken: token, parameters: { serialNumber: LONG } }, 400, 'InvalidParameters', 'register');
      assert.equal(withStore(b, (st) => st.claim(r.serialNumber)?.devices), 0, 'no claim slot taken');
      accepted(await ask(r.client, registerTopic('long'), { certificateOwnershipToken: token, parameters: { serialNumber: 'LONG0001' } }));
    });

    test('by one-time token → InvalidParameters 400; the token is not spent', async () => {
      const r = await tokenClient('long');
      const { token } = await createStep1(r.client);
      await expectRefused(r, registerTopic('long'), { certificateOwnershipToken: token, parameters: { serialNumber: LONG } }, 400, 'InvalidParameters', 'register');
      assert.deepEqual(withStore(b, (st) => st.listTokens().filter((t) => t.template === 'long').map((t) => t.usedAt)), [null], 'the one-time token is unused');
      accepted(await ask(r.client, registerTopic('long'), { certificateOwnershipToken: token, parameters: { serialNumber: 'LONG0002' } }));
    });
  });

  test('a serial number not on the allow-list → NotAllowListed 403 (one on it is provisioned)', async () => {
    const r = await claimClient('listed');
    const { token } = await createStep1(r.client);
    const a = await expectRefused(r, registerTopic('listed'), { certificateOwnershipToken: token, parameters: { serialNumber: 'BAD00001' } }, 403, 'NotAllowListed', 'register');
    assert.match(String(a.body.errorMessage), /BAD00001/);
    const ok = accepted(await ask(r.client, registerTopic('listed'), { certificateOwnershipToken: token, parameters: { serialNumber: 'GOOD0001' } }));
    assert.equal(ok.identity, 'listed-GOOD0001');
  });

  describe('claims and tokens', () => {
    test('a flood of 8 requests from one claim (ratePerMinute 5): the 6th and later → Throttled 429, then registration too', async () => {
      const { csrPem } = await createCsrWithKey({ commonName: 'x' });
      // The quota is per wall-clock minute: a flood that straddles a minute boundary is run again.
      for (let attempt = 1; ; attempt++) {
        const r = await claimClient();
        await r.client.subscribeAsync([`${CSR_TOPIC}/accepted`, `${CSR_TOPIC}/rejected`], { qos: 1 });
        const answers = new Map<string, Answer>();
        const all = new Promise<void>((resolve) => {
          r.client.on('message', (topic, raw) => {
            if (!topic.startsWith(`${CSR_TOPIC}/`)) return;
            const body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
            answers.set(String(body.clientToken), { topic, body });
            if (answers.size === 8) resolve();
          });
        });
        const issued = await issuedCounts(b);
        const from = rec.events.length;
        const minute = Math.floor(Date.now() / 60_000);
        await Promise.all(Array.from({ length: 8 }, (_, i) => r.client.publishAsync(CSR_TOPIC, JSON.stringify({ certificateSigningRequest: csrPem, clientToken: `r${i + 1}` }), { qos: 1 })));
        await withTimeout(all, 10_000, 'the 8 answers');
        if (Math.floor(Date.now() / 60_000) !== minute && attempt < 3) continue;
        for (let i = 1; i <= 5; i++) accepted(answers.get(`r${i}`)!);
        for (let i = 6; i <= 8; i++) assertRejected(answers.get(`r${i}`)!, 429, 'Throttled');
        assert.deepEqual(await issuedCounts(b), { ...issued, certificates: issued.certificates + 5 }, 'the 5 step-1 certificates and nothing more');
        const refused = rec.events.slice(from).filter((e) => e.clientId === r.clientId && e.outcome === 'refused');
        assert.deepEqual(refused.map((e) => e.errorCode), ['Throttled', 'Throttled', 'Throttled'], 'each throttled request audited');
        const token = String(answers.get('r1')!.body.certificateOwnershipToken);
        await expectRefused(r, registerTopic('sensor'), { certificateOwnershipToken: token, parameters: { serialNumber: 'FLOOD001' } }, 429, 'Throttled', 'register');
        return;
      }
    });

    test('a claim with maxDevices 1 asking for a second device → ClaimExhausted 403', async () => {
      const r = await claimClient('sensor', { maxDevices: 1 });
      await provisionThrough(r.client, 'QUOTA001');
      const { csrPem } = await createCsrWithKey({ commonName: 'x' });
      await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: csrPem }, 403, 'ClaimExhausted', 'certificate');
    });

    test('a claim with maxDevices 1 registering two step-1 certificates: the second → ClaimExhausted 403', async () => {
      const r = await claimClient('sensor', { maxDevices: 1 });
      const first = await createStep1(r.client);
      const second = await createStep1(r.client);
      accepted(await ask(r.client, registerTopic('sensor'), { certificateOwnershipToken: first.token, parameters: { serialNumber: 'QUOTA002' } }));
      await expectRefused(r, registerTopic('sensor'), { certificateOwnershipToken: second.token, parameters: { serialNumber: 'QUOTA003' } }, 403, 'ClaimExhausted', 'register');
      assert.equal(withStore(b, (s) => s.claim(r.serialNumber)?.devices), 1);
    });

    test('a revoked claim (store.revokeClaim) → refused (InvalidToken 403) at both steps', async () => {
      const r = await claimClient();
      const { token } = await createStep1(r.client);
      assert.equal(withStore(b, (s) => s.revokeClaim(r.serialNumber, Date.now())), true);
      await expectRefused(r, registerTopic('sensor'), { certificateOwnershipToken: token, parameters: { serialNumber: 'REVOKED1' } }, 403, 'InvalidToken', 'register');
      const { csrPem } = await createCsrWithKey({ commonName: 'x' });
      await expectRefused(r, CSR_TOPIC, { certificateSigningRequest: csrPem }, 403, 'InvalidToken', 'certificate');
    });

    test('an expired one-time token → CONNECT refused 0x86', async () => {
      const expired = b.token('sensor', -60_000);
      const err = await b.connect({ clientId: `refusals-expired-${++seq}`, username: '$provision', password: expired }).then(
        (c) => {
          open.push(c);
          return null;
        },
        (e: unknown) => e as { code?: unknown; message?: string },
      );
      assert.ok(err !== null, 'an expired token does not connect');
      assert.equal(err.code, 0x86, String(err.message));
    });

    test('the same identity provisioned twice → AlreadyProvisioned 409', async () => {
      const r = await claimClient();
      await provisionThrough(r.client, 'TWICE001');
      const { token } = await createStep1(r.client);
      await expectRefused(r, registerTopic('sensor'), { certificateOwnershipToken: token, parameters: { serialNumber: 'TWICE001' } }, 409, 'AlreadyProvisioned', 'register');
    });
  });
});
