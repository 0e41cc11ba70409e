/**
 * `/api/v1/provisioning` and `/api/v1/ota/campaigns`: what the console shows of device
 * provisioning (templates, claims, one-time tokens, provisioned devices) and of OTA
 * campaigns, with `/api/v1/stream/ota` pushing the campaigns' progress every two seconds
 * while a page watches. Owns: these answers and the stream's framing. Must not: read the
 * stores (the FleetFacade does) or change a campaign (the CLI does).
 */
import { HttpError } from './http-io.js';
import { eventStream, ok, type Route } from './router.js';
import type { AdminServices, FleetFacade } from './services.js';

/** How often the campaign stream sends the campaigns again. */
const OTA_STREAM_MS = 2000;

function needFleet(s: AdminServices): FleetFacade {
  if (s.fleet === undefined || s.fleet === null) throw new HttpError(501, 'provisioning and OTA are not available on this broker');
  return s.fleet;
}

export function fleetRoutes(s: AdminServices): Route[] {
  // One read of the stores per tick for every open stream (several consoles open), not one each.
  let last: { at: number; campaigns: object[] } | null = null;
  const campaignsNow = (fleet: FleetFacade): object[] => {
    const at = Date.now();
    if (last === null || at - last.at >= OTA_STREAM_MS / 2) last = { at, campaigns: fleet.campaigns() };
    return last.campaigns;
  };
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/provisioning$/,
      handler: () => {
        const p = needFleet(s).provisioning();
        if (p === null) throw new HttpError(501, 'device provisioning is off on this broker (no provisioning section)');
        return ok(p);
      },
    },
    { method: 'GET', path: /^\/api\/v1\/ota\/campaigns$/, handler: () => ok({ campaigns: needFleet(s).campaigns() }) },
    {
      method: 'GET',
      path: /^\/api\/v1\/stream\/ota$/,
      handler: () => {
        const fleet = needFleet(s);
        return eventStream((send) => {
          let last = '';
          const sendIfChanged = (): void => {
            const campaigns = campaignsNow(fleet);
            const text = JSON.stringify(campaigns);
            // Unchanged progress is not sent again: a quiet rollout costs one read every two seconds.
            if (text !== last) send('campaigns', campaigns);
            last = text;
          };
          sendIfChanged();
          const timer = setInterval(() => {
            try {
              sendIfChanged();
            } catch (err) {
              s.logger.warn({ err: (err as Error).message }, 'OTA campaign stream: reading the campaigns failed');
            }
          }, OTA_STREAM_MS);
          return () => clearInterval(timer);
        });
      },
    },
  ];
}
