/**
 * The web console's built files (Vite's output, `dist/console/`), served by the admin
 * listener under `/console/`. Owns: reading them once at start, their content types and
 * caching, gzip, and the security headers every console page carries. Must not: answer an
 * API path, or serve anything outside the build directory.
 *
 * SECURITY: the files are code, not data, so they are served without authentication; every
 * answer carries a Content-Security-Policy that allows scripts, styles and connections from
 * this origin only (no inline script, no eval, no framing), so an injected string in a page
 * cannot run. Paths are looked up in the set read at start: `..` and symlinks never reach the disk.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type http from 'node:http';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const CONSOLE_PREFIX = '/console/';

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers of every console answer (and of the redirect to it). */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

interface Asset {
  type: string;
  body: Buffer;
  gzipped: Buffer | null;
  /** Vite names built assets by their content: they may be cached for good. */
  immutable: boolean;
}

/** Where the build lands: dist/console beside dist/src (this file runs from dist/src/admin/). */
export function defaultConsoleDir(): string {
  return fileURLToPath(new URL('../../console/', import.meta.url));
}

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const st = statSync(full);
    if (st.isDirectory()) walk(full, out);
    else if (st.isFile()) out.push(full);
  }
  return out;
}

export class ConsoleAssets {
  private constructor(private readonly files: ReadonlyMap<string, Asset>) {}

  /** Reads the build in `dir`; null when there is none (the package was not built with its console). */
  static load(dir: string): ConsoleAssets | null {
    let paths: string[];
    try {
      paths = walk(dir);
    } catch {
      return null;
    }
    const files = new Map<string, Asset>();
    for (const path of paths) {
      const type = TYPES[extname(path).toLowerCase()];
      if (type === undefined) continue;
      const body = readFileSync(path);
      const rel = relative(dir, path).split(sep).join('/');
      // Text compresses; images are compressed already.
      const gzipped = type.startsWith('text/') || type.startsWith('application/json') || type === 'image/svg+xml' ? gzipSync(body, { level: 9 }) : null;
      files.set(rel, { type, body, gzipped, immutable: rel.startsWith('assets/') });
    }
    return files.has('index.html') ? new ConsoleAssets(files) : null;
  }

  /**
   * Answers GET/HEAD of a path under CONSOLE_PREFIX: the file, or the app's index.html for any
   * other path (the app routes on the client), 404 for a missing asset.
   */
  serve(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): void {
    const rel = pathname.slice(CONSOLE_PREFIX.length);
    let asset = this.files.get(rel === '' ? 'index.html' : rel);
    if (asset === undefined && !rel.startsWith('assets/')) asset = this.files.get('index.html');
    if (asset === undefined) {
      res.writeHead(404, { ...CONSOLE_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end('not found\n');
      return;
    }
    const gzip = asset.gzipped !== null && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? asset.gzipped! : asset.body;
    res.writeHead(200, {
      ...CONSOLE_HEADERS,
      'content-type': asset.type,
      'content-length': body.length,
      // The page itself is never cached, so a new build is picked up at the next load.
      'cache-control': asset.immutable ? 'public, max-age=31536000, immutable' : 'no-store',
      vary: 'accept-encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}
