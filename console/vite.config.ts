/**
 * Vite build of the operator console (console/ → dist/console/). Owns: the bundle's shape.
 * Must not: emit inline scripts or styles.
 *
 * SECURITY: the admin listener serves these files under a strict CSP (script-src 'self',
 * style-src 'self'): no module-preload polyfill (Vite would inline it), no inlined assets.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/console/',
  publicDir: false,
  // JSX for Preact without a plugin: the automatic runtime from preact/jsx-runtime.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    modulePreload: { polyfill: false },
    // Nothing becomes a data: URL or an inline block: every asset is its own file.
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    target: 'es2022',
    reportCompressedSize: false,
  },
});
