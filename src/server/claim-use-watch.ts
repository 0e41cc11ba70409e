/**
 * Counts, per claim certificate, the refusals it met outside the provisioning topics
 * (issue 15, "claim credentials used outside provisioning"), between two security audits.
 * Owns: the subscription to `authz.denied` and the bounded table. Must not: refuse anything
 * (the provisioning guard already did) or decide the finding (defender/audit/claim-use.ts).
 *
 * How a claim client is recognised: its certificate carries the OU `bastion-claim`
 * (provisioning/claim-identity.ts), the same test the provisioning guard confines it by. A
 * denial event names only the client id, so the client is looked up on this broker when the
 * denial is emitted (synchronously, while the refused client is still connected). A will
 * refused at CONNECT comes before the session exists and is not attributed.
 */
import type { BrokerApi } from '../broker/api.js';
import { PROVISION_PREFIX } from '../core/provisioning-topics.js';
import type { SecurityEvents } from '../core/security-events.js';
import type { ClaimUseCounts } from '../defender/audit/claim-use.js';
import { CLAIM_OU } from '../provisioning/claim-identity.js';

/** Claims tracked at once; refusals of further claims are counted as untracked. */
export const MAX_TRACKED_CLAIMS = 1000;
/** Topics kept per claim, and the length each is cut to: enough to see what was tried. */
const MAX_TOPICS = 5;
const MAX_TOPIC_CHARS = 128;

interface Entry {
  serialNumber: string;
  commonName: string;
  count: number;
  topics: string[];
  clientId: string;
  remoteAddress: string;
  firstAt: number;
  lastAt: number;
}

export class ClaimUseWatch {
  private table = new Map<string, Entry>();
  private untracked = 0;
  private readonly unsubscribe: () => void;

  constructor(
    events: SecurityEvents,
    private readonly api: BrokerApi,
    private readonly maxClaims = MAX_TRACKED_CLAIMS,
  ) {
    this.unsubscribe = events.on((event, at) => {
      if (event.type !== 'authz.denied' || event.topic.startsWith(PROVISION_PREFIX)) return;
      this.denied(event.clientId, event.remoteAddress, event.topic, at);
    });
  }

  private denied(clientId: string, remoteAddress: string, topic: string, at: number): void {
    const cert = this.api.clientView(clientId)?.certificate;
    if (cert === undefined || cert === null || !cert.organizationalUnits.includes(CLAIM_OU)) return;
    const serial = cert.serialNumber.toUpperCase();
    let entry = this.table.get(serial);
    if (entry === undefined) {
      // SECURITY: bounded: a flood of distinct claims cannot grow the table, and is still counted.
      if (this.table.size >= this.maxClaims) {
        this.untracked += 1;
        return;
      }
      entry = { serialNumber: serial, commonName: cert.commonName, count: 0, topics: [], clientId, remoteAddress, firstAt: at, lastAt: at };
      this.table.set(serial, entry);
    }
    entry.count += 1;
    entry.clientId = clientId;
    entry.remoteAddress = remoteAddress;
    entry.lastAt = at;
    const shown = topic.length > MAX_TOPIC_CHARS ? `${topic.slice(0, MAX_TOPIC_CHARS)}…` : topic;
    if (entry.topics.length < MAX_TOPICS && !entry.topics.includes(shown)) entry.topics.push(shown);
  }

  /** What was counted since the last call, and a fresh start (each audit reports its own period). */
  take(): ClaimUseCounts {
    const claims = [...this.table.values()].map((e) => ({ ...e, topics: [...e.topics], firstAt: new Date(e.firstAt), lastAt: new Date(e.lastAt) }));
    const counts = { claims, untracked: this.untracked };
    this.table = new Map();
    this.untracked = 0;
    return counts;
  }

  stop(): void {
    this.unsubscribe();
  }
}
