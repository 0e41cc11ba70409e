/**
 * Support for the web console's end-to-end tests: launches Debian's Chromium (/usr/bin/chromium)
 * with playwright-core (no browser download), opens pages that trust the test broker's TLS
 * certificate, records console errors and Content-Security-Policy violations, saves a
 * screenshot of every page visited under test-artifacts/console/, and runs axe-core.
 * Owns: browser launch flags, TLS trust for the browser, the page watchers, axe and screenshots.
 * Must not: start brokers or know page names (the tests do), be imported by src/ (test-only),
 * turn off certificate checking (see trustedSpki and trustCaForClientCertificates).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { X509Certificate, createHash } from 'node:crypto';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
const require = createRequire(import.meta.url);
/** test-artifacts/console/ at the repository root (this file runs from dist/test/e2e/). */
export const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/console/', import.meta.url));

/** sha256 of the certificate's SubjectPublicKeyInfo, base64: the form Chromium's SPKI allow-list takes. */
export function spkiHash(certPem: string): string {
  const der = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

/**
 * Launches headless Chromium. `trustedSpki`: the broker's server key(s).
 * SECURITY: there is no certificate database tool (certutil) on the CI image to add the test
 * CA to Chromium's trust store, so instead of `ignoreHTTPSErrors: true` (any certificate) the
 * browser accepts exactly the broker's server key through `--ignore-certificate-errors-spki-list`;
 * the host name (localhost) and validity dates are still checked. Any other certificate fails.
 */
export async function launchBrowser(trustedSpki: string[]): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: the console's end-to-end tests drive Debian's Chromium with playwright-core. Install it with \`apt-get install chromium\` (.ci/run does).`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${trustedSpki.join(',')}`,
    ],
  });
}

/**
 * With `clientCertificates`, Playwright carries the browser's TLS through its own proxy in this
 * process, which checks the server with Node's default CA list (the browser side is its own
 * internal hop). SECURITY: the test CA is added to this test process's default list, so that
 * hop verifies the broker's chain and host name for real instead of `ignoreHTTPSErrors: true`.
 */
export function trustCaForClientCertificates(caPem: string): void {
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), caPem]);
}

export interface Watched {
  context: BrowserContext;
  page: Page;
  /** Console errors (type error), page errors. */
  errors: string[];
  /** CSP violations: "Refused to …" console lines and securitypolicyviolation events. */
  csp: string[];
  /** Answers with status ≥ 400 ("401 GET https://…"): the console's errors name no URL. */
  failed: string[];
}

// Runs in the page before its own scripts (Playwright injects it over CDP, so the page's CSP
// does not apply to it): reports each violation on the console, where page.on('console') sees it.
const CSP_WATCH = `document.addEventListener('securitypolicyviolation', (e) => {
  console.warn('[csp-violation] ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber);
});`;

/** A new context and page with the watchers on. */
export async function watchedPage(browser: Browser, options: BrowserContextOptions = {}): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: false, ...options });
  await context.addInitScript({ content: CSP_WATCH });
  const page = await context.newPage();
  const errors: string[] = [];
  const csp: string[] = [];
  const failed: string[] = [];
  page.on('response', (r) => {
    if (r.status() >= 400) failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  page.on('console', (m) => {
    const text = m.text();
    if (text.startsWith('[csp-violation]') || text.includes('Refused to')) csp.push(text);
    else if (m.type() === 'error') errors.push(text);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return { context, page, errors, csp, failed };
}

/** Saves a full-page screenshot as test-artifacts/console/<name>.png. */
export async function shoot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}${name.replace(/[^A-Za-z0-9._-]+/g, '_')}.png`;
  await page.screenshot({ path, fullPage: true });
  return path;
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: number;
  target: string;
}

const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core on the page as it is. axe is evaluated over CDP rather than with
 * page.addScriptTag: a script tag would be inline script, which the console's CSP
 * (`script-src 'self'`) rightly refuses, and the refusal would count as a violation.
 */
export async function runAxe(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    interface AxeResult { violations: Array<{ id: string; impact?: string | null; help: string; nodes: Array<{ target: unknown[] }> }> }
    const axe = (globalThis as unknown as { axe: { run(ctx: unknown, opts: unknown): Promise<AxeResult> } }).axe;
    const r = await axe.run((globalThis as unknown as { document: unknown }).document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact ?? null, help: v.help, nodes: v.nodes.length, target: String(v.nodes[0]?.target ?? '') }));
  });
}

/** The serious and critical ones. */
export function severe(v: AxeViolation[]): AxeViolation[] {
  return v.filter((x) => x.impact === 'serious' || x.impact === 'critical');
}

export function describeAxe(v: AxeViolation[]): string {
  return v.map((x) => `${x.impact ?? '?'} ${x.id} (${x.nodes} nodes, e.g. ${x.target}): ${x.help}`).join('\n');
}
