/**
 * `/api/v1/overview` and `/api/v1/stream/overview`: what the console's first page shows.
 * The stream is Server-Sent Events: the recent history at once (the charts fill at the first
 * paint), then one `sample` event a second, pushed rather than polled. Owns: the event
 * stream's framing. Must not: sample the broker (the OverviewSource does).
 */
import { HttpError } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices, OverviewSample, OverviewSource } from './services.js';

function needOverview(s: AdminServices): OverviewSource {
  if (s.overview === undefined || s.overview === null) throw new HttpError(501, 'the overview is not available on this broker');
  return s.overview;
}

function frame(sample: OverviewSample): string {
  return `event: sample\ndata: ${JSON.stringify(sample)}\n\n`;
}

export function overviewRoutes(s: AdminServices): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/overview$/,
      handler: () => {
        const source = needOverview(s);
        const history = source.history();
        return ok({ ...source.info(), sample: history[history.length - 1] ?? null });
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/stream\/overview$/,
      handler: () => {
        const source = needOverview(s);
        return {
          status: 200,
          // no-transform: a proxy must not buffer or compress the stream.
          headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store, no-transform', 'x-accel-buffering': 'no' },
          write: (res, closed) => {
            // A reconnecting EventSource waits this long (the browser's default is 3 s).
            res.write(`retry: 2000\n\n${source.history().map(frame).join('')}`);
            const unsubscribe = source.subscribe((sample) => res.write(frame(sample)));
            closed.addEventListener('abort', () => {
              unsubscribe();
              res.end();
            });
          },
        };
      },
    },
  ];
}
