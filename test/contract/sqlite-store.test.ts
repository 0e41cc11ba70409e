/** SqliteStore against the shared contract, plus what only a durable adapter promises. */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { BastionError } from '../../src/core/errors.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { SCHEMA_VERSION } from '../../src/store/sqlite/migrations.js';
import { payloadFor } from '../fixtures/writer-payload.js';
import { message, outbound, runSessionStoreContract } from './session-store.contract.js';

function tempDb(): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bastion-sqlite-'));
  return { dir, file: path.join(dir, 'store.db') };
}

runSessionStoreContract('SqliteStore', async () => {
  const { dir, file } = tempDb();
  let current = new SqliteStore({ path: file });
  return {
    store: current,
    reopen: async () => {
      current.close();
      current = new SqliteStore({ path: file });
      return current;
    },
    cleanup: async () => {
      current.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

/** Rejects after `ms` unless `promise` settles first. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function isStoreError(code: string): (err: unknown) => boolean {
  return (err) => err instanceof BastionError && err.code === code;
}

describe('SqliteStore specifics', () => {
  let dir: string;
  let file: string;
  let store: SqliteStore | undefined;

  beforeEach(() => {
    ({ dir, file } = tempDb());
  });
  afterEach(() => {
    store?.close();
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates the schema in WAL mode with user_version set', () => {
    store = new SqliteStore({ path: file, synchronous: 'FULL' });
    const raw = new Database(file, { readonly: true });
    try {
      assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(raw.pragma('user_version', { simple: true }), SCHEMA_VERSION);
      const tables = raw
        .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .all()
        .map((r) => r.name);
      assert.deepEqual(tables, ['incoming_qos2', 'outbound', 'retained', 'sessions']);
    } finally {
      raw.close();
    }
  });

  it('refuses a database written by a newer schema version', () => {
    const raw = new Database(file);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    assert.throws(() => new SqliteStore({ path: file }), isStoreError('ERR_STORE_VERSION'));
  });

  it('stores NULL properties for messages without properties, JSON otherwise', () => {
    store = new SqliteStore({ path: file });
    const plain = outbound(store, 'a');
    const withProps = outbound(store, 'a', { message: message({ properties: { correlationData: Buffer.from([1, 2]) } }) });
    store.addOutbound(plain);
    store.addOutbound(withProps);
    store.flush();
    const raw = new Database(file, { readonly: true });
    try {
      const rows = raw
        .prepare<[], { properties: string | null; t: string }>('SELECT properties, typeof(payload) AS t FROM outbound ORDER BY seq')
        .all();
      assert.deepEqual(rows.map((r) => r.t), ['blob', 'blob']);
      assert.equal(rows[0]?.properties, null);
      assert.equal(typeof rows[1]?.properties, 'string');
    } finally {
      raw.close();
    }
  });

  it('runs afterFlush only once another connection can see the writes', async () => {
    store = new SqliteStore({ path: file });
    store.flush(); // schema exists before the reader opens
    const raw = new Database(file, { readonly: true });
    try {
      const count = raw.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM outbound');
      const s = store;
      for (let i = 0; i < 500; i++) s.addOutbound(outbound(s, 'a'));
      assert.equal(count.get()?.n, 0, 'nothing committed synchronously');
      const seen = await within(
        5000,
        'afterFlush',
        new Promise<number | undefined>((resolve) => s.afterFlush(() => resolve(count.get()?.n))),
      );
      assert.equal(seen, 500);
    } finally {
      raw.close();
    }
  });

  it('throws ERR_STORE_WRITE from flush, keeps the batch and its callbacks, and recovers', () => {
    store = new SqliteStore({ path: file });
    const s = store;
    const raw = new Database(file);
    try {
      raw.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON outbound BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END");
      s.saveSession({ clientId: 'a', protocolVersion: 5, expiryInterval: 10, disconnectedAt: 0, subscriptions: [] });
      const e = outbound(s, 'a');
      s.addOutbound(e);
      let called = 0;
      s.afterFlush(() => called++);
      assert.throws(() => s.flush(), (err: unknown) => {
        assert.ok(err instanceof BastionError);
        assert.equal(err.code, 'ERR_STORE_WRITE');
        assert.match(err.message, /disk full/);
        return true;
      });
      assert.equal(called, 0, 'no acknowledgement for a failed write');
      assert.equal(s.dirty, true);
      const sessions = raw.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM sessions');
      assert.equal(sessions.get()?.n, 0, 'the whole batch rolled back');

      raw.exec('DROP TRIGGER fail_insert');
      s.flush();
      assert.equal(called, 1);
      assert.equal(s.dirty, false);
      assert.deepEqual(s.load().outbound, [e]);
      assert.equal(sessions.get()?.n, 1);
    } finally {
      raw.close();
    }
  });

  it('reports a failed background flush to onError', async () => {
    const failures: BastionError[] = [];
    let reported: () => void = () => {};
    const gotError = new Promise<void>((resolve) => (reported = resolve));
    store = new SqliteStore({
      path: file,
      onError: (err) => {
        failures.push(err);
        reported();
      },
    });
    const raw = new Database(file);
    try {
      raw.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON incoming_qos2 BEGIN SELECT RAISE(ABORT, 'io error (simulated)'); END");
      let called = false;
      store.addIncomingQos2('a', 1);
      store.afterFlush(() => (called = true));
      await within(5000, 'onError', gotError);
      assert.equal(failures.length, 1);
      assert.equal(failures[0]?.code, 'ERR_STORE_WRITE');
      assert.equal(called, false);
      raw.exec('DROP TRIGGER fail_insert');
    } finally {
      raw.close();
    }
  });

  it('rejects use after close with ERR_STORE_CLOSED', () => {
    const s = new SqliteStore({ path: file });
    s.close();
    s.close(); // idempotent
    assert.throws(() => s.addIncomingQos2('a', 1), isStoreError('ERR_STORE_CLOSED'));
    assert.throws(() => s.afterFlush(() => {}), isStoreError('ERR_STORE_CLOSED'));
    assert.throws(() => s.load(), isStoreError('ERR_STORE_CLOSED'));
  });

  it('keeps every write confirmed by afterFlush across kill -9', async () => {
    const n = 1000;
    const script = fileURLToPath(new URL('../fixtures/sqlite-writer.js', import.meta.url));
    const child = spawn(process.execPath, [script, file, String(n)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
      child.on('exit', (code, signal) => resolve(signal ?? code)),
    );
    try {
      await within(
        20_000,
        'FLUSHED from the writer',
        new Promise<void>((resolve, reject) => {
          let out = '';
          child.stdout.setEncoding('utf8').on('data', (d: string) => {
            out += d;
            if (out.includes('FLUSHED\n')) {
              child.kill('SIGKILL');
              resolve();
            }
          });
          child.on('exit', (code) => reject(new Error(`writer exited (${String(code)}) before FLUSHED: ${stderr}`)));
        }),
      );
      assert.equal(await within(5000, 'writer exit', exited), 'SIGKILL');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }

    store = new SqliteStore({ path: file });
    const victims = store.load().outbound.filter((o) => o.clientId === 'victim');
    assert.equal(victims.length, n);
    victims.forEach((o, i) => {
      assert.equal(o.message.topic, `t/${i}`);
      assert.ok(o.message.payload.equals(payloadFor(i)), `payload of message ${i}`);
      if (i % 3 === 0) assert.ok(o.message.properties?.correlationData?.equals(payloadFor(i)));
      else assert.equal(o.message.properties, undefined);
    });
    const last = victims[victims.length - 1];
    assert.ok(last !== undefined && store.nextSeq() > last.seq);

    const raw = new Database(file, { readonly: true });
    try {
      assert.equal(raw.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      raw.close();
    }
  });
});
