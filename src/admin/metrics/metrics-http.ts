/**
 * Writes a scrape as the HTTP answer to GET /metrics. Owns: its headers. Must not:
 * authenticate (the admin server has done so before it gets here).
 */
import type http from 'node:http';
import type { MetricsEndpoint } from './metrics.js';

export async function sendMetrics(res: http.ServerResponse, endpoint: MetricsEndpoint): Promise<void> {
  const text = await endpoint.render();
  res.writeHead(200, {
    'content-type': endpoint.contentType,
    'content-length': Buffer.byteLength(text),
    // SECURITY: client counts and limits are operator information: not cached on the way.
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}
