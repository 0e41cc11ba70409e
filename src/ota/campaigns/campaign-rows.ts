/**
 * The campaigns of ota-campaigns.db as rows that travel between the nodes of a cluster
 * (issue 14 item 6): one row as a keyed, canonical JSON entry, its validation, and the
 * JOIN of two versions of one campaign. Owns: those. Must not: touch SQLite
 * (sqlite-campaign-store.ts) or NATS (server/cluster-ota.ts).
 *
 * The join: an ended campaign (ABORTED, COMPLETED, CANCELED) wins over one still running
 * or paused (an end is final, also when another node advanced the same version meanwhile);
 * then the higher version; then the earlier updatedAt; then the smaller canonical text.
 * Two nodes' engines advancing the same stage make the same stage at the same version:
 * they converge on the earlier of the two, and the executions both queued are joined by
 * job-rows.ts (equal but for their times).
 *
 * SECURITY: a row from another node is operator-grade input: strictly typed, bounded, its
 * key the one its id gives. The target list is written at creation and travels unchanged.
 */
import { z } from 'zod';
import { CAMPAIGN_STATES, ENDED, type CampaignState } from './ports.js';

const time = z.number().int().nonnegative();
const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const jsonText = (max: number, shape: 'object' | 'array') =>
  z
    .string()
    .max(max)
    .refine((s) => {
      try {
        const v: unknown = JSON.parse(s);
        return shape === 'array' ? Array.isArray(v) : typeof v === 'object' && v !== null && !Array.isArray(v);
      } catch {
        return false;
      }
    }, `not a JSON ${shape}`);

// The column order is the canonical order of an entry's keys (and the table's).
const campaignRow = z
  .object({
    id,
    release_id: z.string().min(1).max(128),
    job_id: id,
    job_document: jsonText(256 * 1024, 'object'),
    target: z.string().min(1).max(4096),
    stage_percents: jsonText(1024, 'array'),
    stage_counts: jsonText(4096, 'array'),
    abort_rule: jsonText(1024, 'object').nullable(),
    timeout_ms: time.nullable(),
    max_retries: z.number().int().min(0).max(10),
    state: z.enum(CAMPAIGN_STATES as [string, ...string[]]),
    stage: z.number().int().min(1),
    targets: jsonText(4 * 1024 * 1024, 'array'),
    created_at: time,
    updated_at: time,
    ended_at: time.nullable(),
    reason: z.string().max(1024).nullable(),
    version: z.number().int().min(1),
  })
  .strict();

export type CampaignRowData = Omit<z.infer<typeof campaignRow>, 'state'> & { state: CampaignState };

/** The prefix of every campaign entry in the cluster's shared state bucket. */
export const CAMPAIGN_ROW_PREFIX = 'otac';

export function campaignKey(campaignId: string): string {
  return `${CAMPAIGN_ROW_PREFIX}.c.${campaignId}`;
}

export function campaignRowText(r: CampaignRowData): string {
  const ordered: Record<string, unknown> = {};
  for (const column of Object.keys(campaignRow.shape)) ordered[column] = (r as Record<string, unknown>)[column];
  return JSON.stringify(ordered);
}

export function decodeCampaignRow(key: string, bytes: Uint8Array): CampaignRowData | { why: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { why: 'not JSON' };
  }
  const parsed = campaignRow.safeParse(raw);
  if (!parsed.success) return { why: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  const row = parsed.data as CampaignRowData;
  if (campaignKey(row.id) !== key) return { why: "a row under another row's key" };
  return row;
}

/** Whether `a` is ahead of `b` (a total order on distinct rows of one campaign). */
function ahead(a: CampaignRowData, b: CampaignRowData): boolean {
  const ea = ENDED.has(a.state);
  if (ea !== ENDED.has(b.state)) return ea;
  if (a.version !== b.version) return a.version > b.version;
  if (a.updated_at !== b.updated_at) return a.updated_at < b.updated_at;
  return campaignRowText(a) <= campaignRowText(b);
}

/** The version of one campaign that has seen both. Commutative, associative, idempotent. */
export function joinCampaignRows(a: CampaignRowData, b: CampaignRowData): CampaignRowData {
  if (a.id !== b.id) throw new Error('joinCampaignRows: two different campaigns');
  return ahead(a, b) ? a : b;
}
