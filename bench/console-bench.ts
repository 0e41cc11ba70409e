/**
 * `npm run bench -- --console`: the web console (issue 16) measured in Debian's Chromium
 * against a real broker on loopback. (1) The built JavaScript and CSS, raw and gzipped.
 * (2) The first page: from navigation (a fresh browser context each run, so nothing is
 * cached) until the Overview shows a live number, with a session already signed in; and
 * until the sign-in page is ready for a token. (3) The client search the Clients page asks
 * for, with `--clients` real mTLS clients connected: GET /api/v1/clients?limit=100 and a
 * prefix search, answered over HTTPS. Mosquitto has no console: these figures stand alone
 * (no ratio), each with the Node that measured it.
 * Owns: these measurements and their report. Must not: listen beyond loopback.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { connectAsync, type MqttClient } from 'mqtt';
import { hashAdminToken } from '../src/admin/api/tokens.js';
import { PkiService } from '../src/server/pki-service.js';
import { SqliteAdminStore } from '../src/store/sqlite/admin-store.js';
import { startProvisioningBroker } from '../test/helpers/provisioning-broker.js';
import { consoleRequest, sessionCookie } from '../test/helpers/console-http.js';

const TOKEN = 'bst_console-bench-token-0123456789abcdefghijklmnop';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface ConsoleBenchOptions {
  runs: number;
  clients: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  return `p50 ${quantile(s, 0.5).toFixed(0)} ms, p95 ${quantile(s, 0.95).toFixed(0)} ms, max ${s[s.length - 1]!.toFixed(0)} ms (${s.length} runs)`;
}

function bundleSizes(): { raw: number; gzip: number } {
  const dir = join(process.cwd(), 'dist', 'console', 'assets');
  let raw = 0;
  let gzip = 0;
  for (const name of readdirSync(dir)) {
    if (!/\.(js|css)$/.test(name)) continue;
    const body = readFileSync(join(dir, name));
    raw += body.length;
    gzip += gzipSync(body, { level: 9 }).length;
  }
  return { raw, gzip };
}

export async function runConsoleBench(opts: ConsoleBenchOptions): Promise<void> {
  console.log(`# console bench: Node ${process.version}, OpenSSL ${process.versions.openssl}, Chromium /usr/bin/chromium`);
  const size = bundleSizes();
  console.log(`bundle: JS+CSS ${(size.raw / 1024).toFixed(1)} KB raw, ${(size.gzip / 1024).toFixed(1)} KB gzipped (budget 150 KB)`);
  // Limits off: thousands of clients from one loopback address would meet the per-address caps.
  const pb = await startProvisioningBroker({ admin: {}, limits: { enabled: false } });
  const clients: MqttClient[] = [];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  try {
    const store = SqliteAdminStore.open(join(pb.dataDir, 'admin.db'));
    store.createToken({ name: 'bench', hash: hashAdminToken(TOKEN), createdAt: Date.now(), scope: 'admin' });
    store.close();
    const t = { port: pb.adminPort!, caPem: pb.caPem };
    const origin = `https://localhost:${t.port}`;
    // The overview's history needs a sample: the sampler ticks once a second.
    await new Promise((r) => setTimeout(r, 1500));

    const overview: number[] = [];
    const signInPage: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const signIn = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token: TOKEN } });
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      await context.addCookies([{ name: '__Host-bastion-session', value: sessionCookie(signIn), url: `${origin}/`, secure: true, httpOnly: true, sameSite: 'Strict' }]);
      const page = await context.newPage();
      const start = performance.now();
      await page.goto(`${origin}/console/#/overview`);
      await page.getByTestId('card-connections').filter({ hasText: /\d/ }).waitFor({ timeout: 10_000 });
      overview.push(performance.now() - start);
      await context.close();

      const fresh = await browser.newContext({ ignoreHTTPSErrors: true });
      const login = await fresh.newPage();
      const begin = performance.now();
      await login.goto(`${origin}/console/`);
      await login.getByLabel('Admin token').waitFor({ timeout: 10_000 });
      signInPage.push(performance.now() - begin);
      await fresh.close();
    }
    console.log(`first page, cold cache, signed in: Overview with live numbers: ${summary(overview)}`);
    console.log(`first page, cold cache, signed out: sign-in form ready: ${summary(signInPage)}`);

    if (opts.clients > 0) {
      // A certificate per device, as a fleet has.
      const ids = Array.from({ length: opts.clients }, (_, i) => `bench-${String(i).padStart(6, '0')}`);
      const creds = new Map<string, { cert: string; key: string }>();
      const pki = await PkiService.open(pb.pkiDir);
      try {
        for (const id of ids) {
          const b = await pki.issueBundle({ profile: 'client', commonName: id, days: 1 });
          creds.set(id, { cert: b.certPem, key: b.keyPem });
        }
      } finally {
        pki.close();
      }
      for (let i = 0; i < ids.length; i += 50) {
        const batch = ids.slice(i, i + 50).map((id) => connectAsync(pb.url, { clientId: id, ca: pb.caPem, cert: creds.get(id)!.cert, key: creds.get(id)!.key, reconnectPeriod: 0, protocolVersion: 5 }));
        clients.push(...(await Promise.all(batch)));
      }
      const signIn = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token: TOKEN } });
      const cookie = sessionCookie(signIn);
      for (const [what, path] of [
        ['first page of 100', '/api/v1/clients?limit=100'],
        ['page at the end', `/api/v1/clients?limit=100&offset=${Math.max(0, opts.clients - 100)}`],
        ['prefix search', '/api/v1/clients?limit=100&prefix=bench-0001'],
      ] as const) {
        const ms: number[] = [];
        for (let i = 0; i < 20; i++) {
          const s = performance.now();
          const a = await consoleRequest(t, { path, cookie });
          if (a.status !== 200) throw new Error(`${path}: ${a.status} ${a.text}`);
          ms.push(performance.now() - s);
        }
        console.log(`client listing with ${opts.clients} connected, ${what} (one HTTPS connection each, TLS handshake included): ${summary(ms)}`);
      }
    }
  } finally {
    for (const c of clients) c.end(true);
    await browser.close();
    await pb.stop();
  }
}
