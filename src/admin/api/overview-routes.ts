/**
 * `/api/v1/overview` and `/api/v1/stream/overview`: what the console's first page shows.
 * The stream is Server-Sent Events: the recent history at once (the charts fill at the first
 * paint), then one `sample` event a second, pushed rather than polled. Owns: the event
 * stream's framing. Must not: sample the broker (the OverviewSource does).
 */
import { HttpError } from './http-io.js';
import { eventStream, ok, type Route } from './router.js';
import type { AdminServices, OverviewSource } from './services.js';

function needOverview(s: AdminServices): OverviewSource {
  if (s.overview === undefined || s.overview === null) throw new HttpError(501, 'the overview is not available on this broker');
  return s.overview;
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
        return eventStream((send) => {
          for (const sample of source.history()) send('sample', sample);
          return source.subscribe((sample) => send('sample', sample));
        });
      },
    },
  ];
}
