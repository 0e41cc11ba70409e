/**
 * The HTTPS admin listener: TLS (operator client certificates optional or required),
 * authentication before anything else, then the route table. Owns: the server, its TLS
 * settings and timeouts, and turning errors into JSON replies. Must not: implement an
 * endpoint (the *-routes files do, and prefix handlers such as EST, given by the composition
 * root, answer paths of their own) or offer plain HTTP (SECURITY: there is no such option).
 */
import https from 'node:https';
import type http from 'node:http';
import type { AdminConfig } from '../../core/admin-config.js';
import type tls from 'node:tls';
import { accessRoutes } from './access-routes.js';
import { assertMayChange, authenticateAdmin, AuthFailureBackoff, type AdminAuthOptions } from './admin-auth.js';
import { ConsoleSessions } from './console-sessions.js';
import { sessionRoute, SESSION_PATH } from './session-routes.js';
import { ConsoleAssets, CONSOLE_HEADERS, CONSOLE_PREFIX, defaultConsoleDir } from '../console-assets.js';
import { banRoutes } from './bans-routes.js';
import { clientRoutes } from './clients-routes.js';
import { defenderRoutes } from './defender-routes.js';
import { auditRoutes } from './audit-routes.js';
import { certificateRoutes } from './certificate-routes.js';
import { fleetRoutes } from './fleet-routes.js';
import { overviewRoutes } from './overview-routes.js';
import { HttpError, readJsonBody, sendJson } from './http-io.js';
import { matchRoute, type Route, type StreamReply } from './router.js';
import type { AdminServices } from './services.js';
import { listenHttp } from '../http-listen.js';
import type { MetricsEndpoint } from '../metrics/metrics.js';
import { sendMetrics } from '../metrics/metrics-http.js';

/**
 * The admin listener's TLS, built by the composition root with the MQTT listeners' context
 * manager (server/admin-side.ts): the same CRL handling, revocation, groups, reload and
 * refusal logging. An unverified operator certificate is left to this server (401).
 */
export interface AdminTls {
  serverOptions(): tls.TlsOptions;
  attach(server: tls.Server): void;
  close(): void;
}

/**
 * Paths outside the operator API that authenticate their own callers (EST for devices,
 * wired by server/admin-side.ts). A request whose path starts with `prefix` goes to
 * `handle` and to nothing else: no operator authentication, no operator route.
 */
export interface PrefixHandler {
  readonly prefix: string;
  /** Answers the request; false: it was not the handler's (answered 404 here). */
  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean>;
}

export interface AdminApiOptions {
  config: AdminConfig;
  tls: AdminTls;
  services: AdminServices;
  /** SECURITY: each prefix must lie outside `/api/`, `/metrics` and `/console/`: its callers are not operators. */
  prefixHandlers?: readonly PrefixHandler[];
  /** The web console's build directory; default dist/console. */
  consoleDir?: string;
}

export interface RunningAdminApi {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
  /**
   * Serves GET /metrics (Prometheus text format) behind the same authentication, once the
   * broker's metrics exist (the server sets it after the listeners started); null: no such route.
   */
  serveMetrics(endpoint: MetricsEndpoint | null): void;
}

export async function startAdminApi(opts: AdminApiOptions): Promise<RunningAdminApi> {
  const { config, services } = opts;
  const { logger } = services;
  const tlsConfig = config.tls;
  const routes: Route[] = [...clientRoutes(services), ...banRoutes(services), ...accessRoutes(services), ...defenderRoutes(services), ...overviewRoutes(services), ...certificateRoutes(services), ...auditRoutes(services), ...fleetRoutes(services)];
  // Built once: every request authenticates against the same settings, token store, backoff and sessions.
  const auth: AdminAuthOptions = {
    operatorOu: config.operatorOu,
    viewerOu: config.viewerOu,
    tokensEnabled: config.tokens,
    tokens: services.tokens,
    backoff: new AuthFailureBackoff(services.now),
    sessions: new ConsoleSessions(services.now),
  };
  const assets = config.console ? ConsoleAssets.load(opts.consoleDir ?? defaultConsoleDir()) : null;
  if (config.console && assets === null) logger.warn({ dir: opts.consoleDir ?? defaultConsoleDir() }, 'the web console is not built (npm run build); /console/ answers 404');
  /** Open event streams: ended when the server stops. */
  const streams = new Set<AbortController>();
  let metrics: MetricsEndpoint | null = null;
  const prefixHandlers = opts.prefixHandlers ?? [];
  for (const h of prefixHandlers) {
    // SECURITY: a foreign prefix may not swallow an operator path (`/`, `/api/…`, `/metrics`).
    const operatorPath = (p: string): boolean => p.startsWith(h.prefix) || h.prefix.startsWith(p);
    if (!/^\/[^/]+\/(?:.*\/)?$/.test(h.prefix) || operatorPath('/api/') || operatorPath('/metrics') || operatorPath(CONSOLE_PREFIX)) throw new Error(`admin API: prefix ${h.prefix} overlaps the operator API`);
  }

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    let bodyRead = false;
    try {
      const url = new URL(req.url ?? '/', 'https://admin.invalid');
      // SECURITY: matched on the normalised path (`/x/../api/…` is `/api/…`, an operator route); operator credentials are not looked at there.
      const foreign = prefixHandlers.find((h) => url.pathname.startsWith(h.prefix));
      if (foreign !== undefined) {
        if (!(await foreign.handle(req, res))) throw new HttpError(404, `no such endpoint: ${url.pathname}`);
        return;
      }
      if (url.pathname === '/' || url.pathname === '/console' || url.pathname.startsWith(CONSOLE_PREFIX)) {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `method ${req.method ?? ''} not allowed on ${url.pathname}`, { allow: 'GET, HEAD' });
        if (assets === null) throw new HttpError(404, config.console ? 'the web console is not part of this build' : 'the web console is switched off (admin.console: false)');
        if (!url.pathname.startsWith(CONSOLE_PREFIX)) {
          res.writeHead(302, { ...CONSOLE_HEADERS, location: CONSOLE_PREFIX, 'cache-control': 'no-store', 'content-length': 0 });
          res.end();
          return;
        }
        return assets.serve(req, res, url.pathname);
      }
      if (url.pathname === SESSION_PATH) {
        bodyRead = true;
        const reply = await sessionRoute(req, auth, services, config.maxBodyBytes);
        return sendJson(res, reply.status, reply.body, reply.headers);
      }
      // SECURITY: who is asking comes first; an unauthenticated caller learns nothing about routes.
      const caller = authenticateAdmin(req, auth);
      const actor = caller.actor;
      // SECURITY: metrics name client counts and limits: operators only, like the API (Prometheus scrapes with a bearer token).
      if (url.pathname === '/metrics' && metrics !== null) {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `method ${req.method ?? ''} not allowed on /metrics`, { allow: 'GET, HEAD' });
        return await sendMetrics(res, metrics);
      }
      const { handler, params, readOnly } = matchRoute(routes, req.method ?? 'GET', url.pathname);
      // SECURITY: scope, CSRF token and origin are checked before a change runs (or its body is read).
      if (req.method !== 'GET' && req.method !== 'HEAD') assertMayChange(req, caller, readOnly);
      let body: Promise<unknown> | undefined;
      const reply = await handler({
        actor,
        params,
        query: url.searchParams,
        body: () => {
          bodyRead = true;
          return (body ??= readJsonBody(req, config.maxBodyBytes));
        },
      });
      if ('write' in reply) return await stream(res, reply);
      sendJson(res, reply.status, reply.body, reply.headers);
    } catch (err) {
      // A body we did not read may be large: close rather than drain it.
      const close: Record<string, string> = bodyRead || req.complete ? {} : { connection: 'close' };
      if (err instanceof HttpError) return sendJson(res, err.status, { error: err.message }, { ...close, ...err.headers });
      logger.error({ err: (err as Error).message, path: req.url }, 'admin API request failed');
      sendJson(res, 500, { error: 'internal error' }, close);
    }
  };

  /** Writes a StreamReply: the handler owns the body; the stream ends when the client goes or we stop. */
  const stream = async (res: http.ServerResponse, reply: StreamReply): Promise<void> => {
    const closed = new AbortController();
    streams.add(closed);
    res.once('close', () => {
      closed.abort();
      streams.delete(closed);
    });
    res.writeHead(reply.status, { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...reply.headers });
    try {
      await reply.write(res, closed.signal);
    } catch (err) {
      // The status line is gone: the only honest end left is a cut connection.
      if (!closed.signal.aborted) logger.warn({ err: (err as Error).message }, 'admin API stream failed');
      res.destroy();
    }
  };

  const tlsContext = opts.tls;
  const server = https.createServer(
    tlsContext.serverOptions(),
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        logger.error({ err: (err as Error).message }, 'admin API reply failed');
        res.destroy();
      });
    },
  );
  tlsContext.attach(server);
  let bound: Awaited<ReturnType<typeof listenHttp>>;
  try {
    bound = await listenHttp(server, config.host, config.port);
  } catch (err) {
    tlsContext.close();
    throw err;
  }
  server.on('error', (err) => logger.error({ err: err.message }, 'admin API error'));
  logger.info({ host: bound.host, port: bound.port, clientCerts: tlsConfig.clientCerts, tokens: config.tokens }, 'admin API listening (HTTPS)');
  return {
    host: bound.host,
    port: bound.port,
    close: async () => {
      for (const s of streams) s.abort();
      tlsContext.close();
      await bound.close();
    },
    serveMetrics(endpoint) {
      metrics = endpoint;
    },
  };
}
