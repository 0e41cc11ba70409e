/**
 * TLS session resumption: a reconnecting client that offers the ticket from its last
 * session skips the full handshake (TLS 1.3 and 1.2), keeps its certificate identity, and
 * two brokers sharing one ticket key file accept each other's tickets.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { issueLocalServerCertificate } from '../../src/pki/index.js';
import { makeTestPki, testCa, type TestPki } from '../helpers/pki.js';
import { withTimeout } from './support.js';
import { clientTls, connackOver, startTlsBroker, tlsHandshake, type TlsBroker } from './tls-support.js';

type Version = 'TLSv1.2' | 'TLSv1.3';

/** Handshakes, waits for the session ticket, closes; returns the session to resume with. */
async function firstSession(b: TlsBroker, version: Version): Promise<Buffer> {
  const socket = await tlsHandshake(b.port, { ...clientTls(b.pki, b.pki.clients.client1!), minVersion: version, maxVersion: version });
  // TLS 1.2 delivers the ticket inside the handshake; TLS 1.3 sends it afterwards.
  const session = version === 'TLSv1.2' ? socket.getSession() : await withTimeout(new Promise<Buffer>((resolve) => socket.once('session', resolve)), 5000, 'a session ticket');
  assert.ok(session !== undefined, 'a TLS 1.2 session');
  socket.destroy();
  return session;
}

function resume(b: TlsBroker, version: Version, session: Buffer): Promise<tls.TLSSocket> {
  return tlsHandshake(b.port, { ...clientTls(b.pki, b.pki.clients.client1!), minVersion: version, maxVersion: version, session });
}

describe('session resumption on one broker', () => {
  let b: TlsBroker;
  before(async () => {
    b = await startTlsBroker();
  });
  after(() => b.stop());

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    test(`${version}: the second connection resumes the first session and keeps the certificate identity`, async () => {
      const session = await firstSession(b, version);
      const socket = await resume(b, version, session);
      try {
        assert.equal(socket.isSessionReused(), true);
        assert.equal(await connackOver(socket, `resumed-${version}`), 0);
        assert.equal((await b.logger.waitFor('client connected', { clientId: `resumed-${version}` })).obj.principal, 'client1');
      } finally {
        socket.destroy();
      }
    });
  }

  test('the ticket key file is private (0600)', () => {
    assert.equal(statSync(join(b.dir, 'data', 'tls-ticket-keys')).mode & 0o777, 0o600);
  });
});

describe('two brokers sharing the ticket key file', () => {
  let dir: string;
  let pki: TestPki;
  let a: TlsBroker;
  let bb: TlsBroker;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-tls-tickets-'));
    pki = await makeTestPki(join(dir, 'pki'), ['client1']);
    // One data directory per broker (a data directory has one owner), one shared key file.
    const shared = { sessionTickets: { keyFile: join(dir, 'shared-ticket-keys') } };
    a = await startTlsBroker({ dir: join(dir, 'a'), pki, tls: shared });
    bb = await startTlsBroker({ dir: join(dir, 'b'), pki, tls: shared });
  });
  after(async () => {
    await a.stop();
    await bb.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    test(`${version}: a session from broker A resumes on broker B`, async () => {
      const session = await firstSession(a, version);
      const socket = await resume(bb, version, session);
      try {
        assert.equal(socket.isSessionReused(), true);
      } finally {
        socket.destroy();
      }
    });
  }

  test('a broker with its own key file does not accept the tickets (the control case)', async () => {
    const other = await startTlsBroker({ pki, tls: { sessionTickets: { keyFile: join(dir, 'other-keys') } } });
    try {
      const session = await firstSession(a, 'TLSv1.3');
      const socket = await resume(other, 'TLSv1.3', session);
      assert.equal(socket.isSessionReused(), false);
      socket.destroy();
    } finally {
      await other.stop();
    }
  });
});

describe('resumption across a certificate reload', () => {
  test('a ticket issued before a reload still resumes after it (the ticket key is re-applied)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-tls-tickets-reload-'));
    try {
      const pki = await makeTestPki(join(dir, 'pki'), ['client1']);
      const certPath = join(dir, 'server.crt');
      const keyPath = join(dir, 'server.key');
      writeFileSync(certPath, readFileSync(pki.serverCert));
      writeFileSync(keyPath, readFileSync(pki.serverKey), { mode: 0o600 });
      const b = await startTlsBroker({ dir, pki, tls: { cert: certPath, key: keyPath } });
      try {
        const session = await firstSession(b, 'TLSv1.3');
        const fresh = await issueLocalServerCertificate(await testCa());
        writeFileSync(keyPath, fresh.keyPem);
        writeFileSync(certPath, fresh.certPem);
        const result = await b.tls.reload();
        assert.deepEqual(result, { ok: true, changed: ['cert', 'key'] });
        const socket = await resume(b, 'TLSv1.3', session);
        assert.equal(socket.isSessionReused(), true);
        socket.destroy();
      } finally {
        await b.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
