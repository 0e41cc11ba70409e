/**
 * The built console (dist/console/, made by `npm run build`, which `npm test`'s pretest
 * runs): its index.html works under the admin listener's CSP and the bundle stays small.
 * Owns: checks of the built files. Must not: build them (the build script does) or start
 * a browser (the e2e tests do).
 *
 * SECURITY: the console is served with `script-src 'self'; style-src 'self'`: an inline
 * script, a <style> element or a style="" attribute would be blocked (and a page that
 * needed one would tempt someone to loosen the policy).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = join(process.cwd(), 'dist', 'console');
const BUDGET = 150 * 1024;

function files(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) files(full, out);
    else out.push(full);
  }
  return out;
}

test('index.html exists and has no inline script, <style> or style attribute', () => {
  const index = join(root, 'index.html');
  assert.ok(existsSync(index), `${index} is missing: run npm run build`);
  const html = readFileSync(index, 'utf8');
  assert.match(html, /<html lang="en">/);
  const scripts = [...html.matchAll(/<script\b([^>]*)>/gi)];
  assert.ok(scripts.length > 0, 'index.html loads no script');
  for (const [tag, attrs] of scripts) assert.match(attrs ?? '', /\bsrc="[^"]+"/, `inline script: ${tag}`);
  assert.doesNotMatch(html, /<style\b/i, 'a <style> element');
  assert.doesNotMatch(html, /\sstyle\s*=/i, 'a style= attribute');
});

test('every asset index.html references exists, under the /console/ base', () => {
  const html = readFileSync(join(root, 'index.html'), 'utf8');
  const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(refs.length >= 2, `expected a script and a stylesheet, saw ${refs.join(', ')}`);
  for (const ref of refs) {
    assert.ok(ref.startsWith('/console/'), `${ref} is not under /console/ (no CDN, the base is /console/)`);
    const file = join(root, ref.slice('/console/'.length));
    assert.ok(existsSync(file), `${ref} is referenced but ${file} does not exist`);
  }
});

test('the gzipped JS and CSS stay within 150 KB', (t) => {
  const assets = files(root).filter((f) => /\.(js|css)$/.test(f));
  assert.ok(assets.some((f) => f.endsWith('.js')) && assets.some((f) => f.endsWith('.css')), 'no JS or CSS built');
  let raw = 0;
  let gz = 0;
  for (const f of assets) {
    const body = readFileSync(f);
    raw += body.length;
    gz += gzipSync(body, { level: 9 }).length;
  }
  t.diagnostic(`console bundle: ${assets.length} files, ${(raw / 1024).toFixed(1)} KB raw, ${(gz / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB)`);
  assert.ok(gz <= BUDGET, `gzipped JS+CSS is ${gz} bytes, over the ${BUDGET}-byte budget`);
});
