/**
 * The dependency linter: enforces ARCHITECTURE.md's import rules on src/ and forbids
 * import cycles. Reads the TypeScript sources as text, so it runs in the test command
 * with no extra tool.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(process.cwd(), 'src');

/** Which top-level modules each module may import from (besides itself). */
const ALLOWED: Record<string, string[]> = {
  core: [],
  protocol: ['core'],
  broker: ['core', 'protocol'],
  security: ['core', 'protocol', 'broker'],
  pki: ['core'],
  transport: ['core', 'protocol', 'broker', 'security', 'pki'],
  store: ['core', 'protocol', 'broker'],
  cluster: ['core', 'protocol', 'broker', 'store'],
  // Signed OTA manifests and key sets (issue 14): formats and verification shared by the broker side and devices.
  firmware: ['core', 'pki'],
  ota: ['core', 'protocol', 'broker', 'security', 'pki', 'firmware', 'store'],
  admin: ['core', 'protocol', 'broker', 'security', 'pki'],
  client: ['core', 'protocol', 'pki'],
  // Device provisioning and renewal (issue 13): a subsystem of its own, with its SQLite records.
  provisioning: ['core', 'protocol', 'broker', 'security', 'pki', 'admin', 'store'],
  // Behaviour detection and security audit checks (issue 15): pure cores fed by the broker's public ports and events.
  // detect/ uses broker; audit/ (security audit checks) uses pki and store (the inventory's record type), never broker.
  defender: ['core', 'protocol', 'security', 'broker', 'pki', 'store'],
  // The device SDK (`bastion-mqtt/device`): runs on devices, so it needs nothing of the broker.
  device: ['core', 'pki', 'firmware'],
  server: ['core', 'protocol', 'broker', 'security', 'pki', 'transport', 'store', 'cluster', 'ota', 'admin', 'client', 'provisioning', 'firmware', 'defender'],
  cli: ['core', 'protocol', 'broker', 'security', 'pki', 'transport', 'store', 'cluster', 'ota', 'admin', 'client', 'server', 'provisioning', 'device', 'firmware', 'defender'],
};

/** Modules that must stay free of I/O: no sockets, files, databases. */
const PURE = new Set(['core', 'protocol', 'broker', 'security', 'pki', 'firmware', 'defender']);
const IO_MODULES = ['node:net', 'node:tls', 'node:http', 'node:https', 'node:fs', 'node:fs/promises', 'node:child_process', 'node:dgram', 'better-sqlite3', 'ioredis', 'net', 'tls', 'http', 'fs'];
/** node:crypto only where ARCHITECTURE allows it. */
// security/authn hashes passwords (scrypt) and computes SCRAM proofs: that is crypto, not I/O.
// firmware/ hashes images and names keys (SHA-256), on a device as on the broker.
const CRYPTO_ALLOWED = (file: string): boolean =>
  file.startsWith('pki/') || file.startsWith('firmware/') || file.startsWith('defender/audit/') || file.startsWith('security/audit/') || file.startsWith('security/authn/') || !PURE.has(file.split('/')[0]!);

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) sources(full, out);
    else if (name.endsWith('.ts')) out.push(full);
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s+(type\s+)?(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]/g;
const DYNAMIC_RE = /import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Import specifiers of a file; `typeOnly` imports are erased at run time. */
function importsOf(file: string): Array<{ spec: string; typeOnly: boolean }> {
  const text = readFileSync(file, 'utf8');
  const out: Array<{ spec: string; typeOnly: boolean }> = [];
  IMPORT_RE.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = IMPORT_RE.exec(text)) !== null) out.push({ spec: m[2]!, typeOnly: m[1] !== undefined });
  DYNAMIC_RE.lastIndex = 0;
  while ((m = DYNAMIC_RE.exec(text)) !== null) out.push({ spec: m[1]!, typeOnly: false });
  return out;
}

function resolveLocal(from: string, spec: string): string {
  return resolve(dirname(from), spec).replace(/\.js$/, '.ts');
}

const files = sources(ROOT);
const graph = new Map<string, string[]>();
const violations: string[] = [];
for (const file of files) {
  const rel = relative(ROOT, file);
  const layer = rel.split('/')[0]!;
  const allowed = ALLOWED[layer];
  const edges: string[] = [];
  for (const { spec, typeOnly } of importsOf(file)) {
    if (spec.startsWith('.')) {
      const target = resolveLocal(file, spec);
      const targetLayer = relative(ROOT, target).split('/')[0]!;
      // Type-only imports vanish at run time, so only value imports can form a cycle.
      if (!typeOnly) edges.push(target);
      if (allowed === undefined) violations.push(`${rel}: module "${layer}" is not in the architecture map`);
      else if (targetLayer !== layer && !allowed.includes(targetLayer)) violations.push(`${rel} imports ${relative(ROOT, target)}: ${layer} may not depend on ${targetLayer}`);
    } else {
      if (PURE.has(layer) && IO_MODULES.includes(spec)) violations.push(`${rel} imports ${spec}: ${layer} must not do I/O`);
      if ((spec === 'node:crypto' || spec === 'crypto') && !CRYPTO_ALLOWED(rel)) violations.push(`${rel} imports ${spec}: only pki and security/audit may use node:crypto`);
    }
  }
  graph.set(file, edges);
}

test('imports follow the layering of ARCHITECTURE.md', () => {
  assert.ok(files.length > 10, 'the linter found the sources');
  assert.deepEqual(violations, []);
});

test('there are no run-time import cycles', () => {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'visiting');
    stack.push(f);
    for (const g of graph.get(f) ?? []) {
      const s = state.get(g);
      if (s === 'visiting') cycles.push([...stack.slice(stack.indexOf(g)), g].map((x) => relative(ROOT, x)).join(' → '));
      else if (s === undefined && graph.has(g)) visit(g);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

/**
 * console/ (the web console, built by Vite for the browser) is a module of its own: it talks
 * to the broker only over the admin API, so it imports nothing of src/ (no server code in
 * the bundle), no Node built-in, and only the front-end packages chosen for it.
 */
const CONSOLE_ROOT = resolve(process.cwd(), 'console');
const CONSOLE_PACKAGES = ['preact', 'preact/hooks', 'preact/jsx-runtime', 'uplot'];

function consoleSources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) consoleSources(full, out);
    else if (/\.(ts|tsx)$/.test(name) && name !== 'vite.config.ts') out.push(full);
  }
  return out;
}

test('console/ imports only its own files and its front-end packages', () => {
  const found = consoleSources(join(CONSOLE_ROOT, 'src'));
  assert.ok(found.length > 3, 'the linter found the console sources');
  const bad: string[] = [];
  for (const file of found) {
    for (const { spec } of importsOf(file)) {
      const rel = relative(process.cwd(), file);
      if (spec.startsWith('.')) {
        if (relative(CONSOLE_ROOT, resolve(dirname(file), spec)).startsWith('..')) bad.push(`${rel} imports ${spec}: outside console/`);
      } else if (!CONSOLE_PACKAGES.includes(spec) && !/^uplot\/dist\/[\w.]+\.css$/.test(spec)) bad.push(`${rel} imports ${spec}: not a console package`);
    }
  }
  assert.deepEqual(bad, []);
});

test('the linter catches a forbidden import (self-check)', () => {
  const fake = join(ROOT, 'broker', 'fake.ts');
  const target = resolveLocal(fake, '../transport/connection.js');
  const targetLayer = relative(ROOT, target).split('/')[0]!;
  assert.equal(ALLOWED.broker!.includes(targetLayer), false);
});
