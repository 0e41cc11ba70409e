/**
 * The clients of a whole cluster for the admin API (issue 12): every node answers admin
 * requests about its own connected clients on `bmc.node.<nodeId>.admin` (their ids in
 * listing order, their views, one client's detail, a kick), and this node's
 * `ClientDirectory` asks the others. A listing merges every live node's client ids in
 * client id order (a k-way merge over pages of ids, so paging is stable and costs ids, not
 * views, for what it skips), then fetches the views of the page from the nodes holding
 * them. One client's detail or a kick goes to the node that owns the client id (the
 * sessions bucket says which), after a look at this node. Owns: the admin subjects, their
 * wire format and the merge. Must not: touch sessions or connections (BrokerApi does), or
 * decide who may ask (the admin API's authentication does, before anything is sent).
 *
 * SECURITY: requests are parsed strictly (a closed set of operations, bounded ids, pages
 * and reasons); anything else is answered with an error and nothing is done. NATS itself
 * is the cluster's trust boundary (whoever may publish on it can already route any
 * message): the admin API's operator authentication and authorization stay the gate.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { RequestError } from '@nats-io/transport-node';
import { z } from 'zod';
import {
  clampPage,
  compareClientIds,
  DirectoryUnavailableError,
  type BrokerApi,
  type ClientDirectory,
  type ClientPage,
  type ConnectedClientDetail,
  type ConnectedClientView,
} from '../broker/api.js';
import type { Logger } from '../core/logger.js';
import type { ClusterNatsConnection } from './nats-connection.js';
import { NODES_BUCKET } from './node-leases.js';
import { decodeOwnerRecord } from './session-record.js';
import { SESSIONS_BUCKET } from './session-registry.js';
import { clientIdToKey, isCodecRefusal, MAX_ENCODED_TOPIC_BYTES } from './subject-codec.js';

/** The admin subject of a node. */
export function adminSubject(nodeId: string): string {
  return `bmc.node.${nodeId}.admin`;
}

/** How long a node has to answer one admin request. */
const DEFAULT_REQUEST_TIMEOUT_MS = 2000;
/** Client ids per page of a listing's merge. */
const IDS_PAGE = 1000;
/** Client ids per request for their views. */
const VIEWS_PER_REQUEST = 100;
/** An answer stops growing past this many bytes (NATS max_payload is 1 MiB by default). */
const ANSWER_BUDGET_BYTES = 256 * 1024;
/** Longest client id a request may name: a cluster refuses longer ones at CONNECT (subject-codec). */
const MAX_CLIENT_ID = MAX_ENCODED_TOPIC_BYTES;
const MAX_REASON = 512;

const clientId = z.string().min(1).max(MAX_CLIENT_ID);
const requestSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('ids'), after: clientId.nullable(), limit: z.number().int().min(1).max(IDS_PAGE), prefix: clientId.optional() }).strict(),
  z.object({ op: z.literal('views'), ids: z.array(clientId).min(1).max(VIEWS_PER_REQUEST) }).strict(),
  z.object({ op: z.literal('get'), id: clientId }).strict(),
  z.object({ op: z.literal('kick'), id: clientId, reason: z.string().max(MAX_REASON) }).strict(),
]);
type AdminRequest = z.infer<typeof requestSchema>;

// Answers are checked as well: a node of another version (or a stray responder) is
// refused rather than trusted to have the shape this one expects.
const viewShape = z.looseObject({ clientId: z.string(), node: z.string() });
const idsAnswer = z.object({ total: z.number().int().min(0), ids: z.array(z.string()), more: z.boolean() });
const viewsAnswer = z.object({ clients: z.array(viewShape), done: z.number().int().min(1) });
const getAnswer = z.object({ client: viewShape.nullable() });
const kickAnswer = z.object({ kicked: z.boolean() });

export interface ClusterAdminOptions {
  nc: NatsConnection;
  /**
   * The connection's consumer gate (nats-connection.ts), for the node list (a key listing
   * is a consumer): with it none is made once the connection closes. Without it the
   * listing is made directly.
   */
  conn?: Pick<ClusterNatsConnection, 'consumer'>;
  nodeId: string;
  /** This node's clients. */
  local: BrokerApi;
  logger: Logger;
  /** How long a node has to answer (default 2 s). */
  requestTimeoutMs?: number;
}

/** A node that did not answer (`gone`: nobody listens on its subject, so it holds no clients). */
class NodeSilent extends Error {
  constructor(
    readonly node: string,
    readonly gone: boolean,
    why: string,
  ) {
    super(`cluster node ${node} did not answer: ${why}`);
  }
}

/** One node's place in a listing's merge. */
interface Cursor {
  node: string;
  ids: string[];
  pos: number;
  more: boolean;
  total: number;
}

export class ClusterAdmin implements ClientDirectory {
  private sub: Subscription | null = null;
  private kvs: Promise<{ sessions: KV; nodes: KV }> | null = null;
  private readonly timeout: number;

  constructor(private readonly opts: ClusterAdminOptions) {
    this.timeout = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  /** Starts answering this node's admin subject. */
  start(): void {
    this.sub = this.opts.nc.subscribe(adminSubject(this.opts.nodeId), { callback: (err, msg) => (err === null ? this.onRequest(msg) : undefined) });
  }

  stop(): void {
    try {
      this.sub?.unsubscribe();
    } catch {
      // The connection is closed already: so is the subscription.
    }
    this.sub = null;
  }

  async listClients(offset: number, limit: number, prefix?: string): Promise<ClientPage> {
    const only = prefix === undefined || prefix === '' ? undefined : prefix;
    const page = clampPage(offset, limit);
    const unreachable: string[] = [];
    const silent = (err: unknown, node: string): null => {
      if (!(err instanceof NodeSilent)) throw err;
      if (!err.gone) {
        unreachable.push(node);
        this.opts.logger.warn({ node, err: err.message }, 'a cluster node left out of a client listing');
      }
      return null;
    };
    const nodes = await this.liveNodes();
    const first = await Promise.all(nodes.map((node) => this.idsPage(node, null, only).catch((err: unknown) => silent(err, node))));
    const cursors = first.filter((c): c is Cursor => c !== null);
    let total = cursors.reduce((n, c) => n + c.total, 0);
    // The k-way merge: skip `offset` ids, keep the next `limit` with the node holding each.
    const picked: Array<{ id: string; node: string }> = [];
    let skipped = 0;
    let live = cursors;
    while (picked.length < page.limit) {
      const refills = live.filter((c) => c.pos >= c.ids.length && c.more);
      for (const [i, next] of (await Promise.all(refills.map((c) => this.idsPage(c.node, c.ids[c.ids.length - 1]!, only).catch((err: unknown) => silent(err, c.node))))).entries()) {
        const c = refills[i]!;
        if (next === null) {
          total -= c.total;
          c.more = false;
          c.ids = [];
          c.pos = 0;
        } else Object.assign(c, { ids: next.ids, pos: 0, more: next.more });
      }
      live = live.filter((c) => c.pos < c.ids.length);
      if (live.length === 0) break;
      let min = live[0]!;
      for (const c of live) if (compareClientIds(c.ids[c.pos]!, min.ids[min.pos]!) < 0) min = c;
      const id = min.ids[min.pos++]!;
      if (skipped < page.offset) skipped++;
      else picked.push({ id, node: min.node });
    }
    const views = new Map<string, ConnectedClientView>();
    const byNode = new Map<string, string[]>();
    for (const p of picked) {
      const ids = byNode.get(p.node);
      if (ids === undefined) byNode.set(p.node, [p.id]);
      else ids.push(p.id);
    }
    await Promise.all(
      [...byNode].map(async ([node, ids]) => {
        try {
          for (const v of await this.viewsOf(node, ids)) views.set(`${node}\u0000${v.clientId}`, v);
        } catch (err) {
          silent(err, node);
        }
      }),
    );
    // A client that left between the two steps is missing from the page.
    const clients = picked.flatMap((p) => views.get(`${p.node}\u0000${p.id}`) ?? []);
    return { total, offset: page.offset, limit: page.limit, clients, unreachableNodes: [...new Set(unreachable)].sort(compareClientIds) };
  }

  async getClient(id: string): Promise<ConnectedClientDetail | null> {
    const here = this.opts.local.getClient(id);
    if (here !== null) return here;
    const owner = await this.ownerElsewhere(id);
    if (owner === null) return null;
    const answer = await this.askOwner(owner, { op: 'get', id }, getAnswer);
    if (answer === null || answer.client === null) return null;
    // Shape checked (clientId, node); the rest is the owner's ConnectedClientDetail.
    return answer.client as unknown as ConnectedClientDetail;
  }

  async kick(id: string, reason: string): Promise<boolean> {
    if (this.opts.local.kick(id, reason)) return true;
    const owner = await this.ownerElsewhere(id);
    if (owner === null) return false;
    const answer = await this.askOwner(owner, { op: 'kick', id, reason: reason.slice(0, MAX_REASON) }, kickAnswer);
    return answer !== null && answer.kicked;
  }

  /** Answers a request from another node (or this one): only a well-formed one acts. */
  private onRequest(msg: Msg): void {
    let answer: unknown;
    try {
      const parsed = requestSchema.safeParse(msg.json());
      answer = parsed.success ? this.answer(parsed.data) : { error: 'malformed admin request' };
    } catch {
      answer = { error: 'malformed admin request' };
    }
    if (msg.reply === undefined || msg.reply === '') return;
    msg.respond(JSON.stringify(answer));
  }

  /** What this node answers to `req`. */
  private answer(req: AdminRequest): unknown {
    const { local } = this.opts;
    switch (req.op) {
      case 'ids': {
        const { total, ids } = local.clientIds(req.after, req.limit, req.prefix);
        const kept = fitting(ids);
        return { total, ids: kept, more: kept.length < ids.length || ids.length === req.limit };
      }
      case 'views': {
        let done = 0;
        let bytes = 0;
        const clients: ConnectedClientView[] = [];
        for (const id of req.ids) {
          const view = local.clientView(id);
          const size = view === null ? 0 : Buffer.byteLength(JSON.stringify(view));
          if (done > 0 && bytes + size > ANSWER_BUDGET_BYTES) break;
          bytes += size;
          done++;
          if (view !== null) clients.push(view);
        }
        return { clients, done };
      }
      case 'get':
        return { client: local.getClient(req.id) };
      case 'kick':
        return { kicked: local.kick(req.id, req.reason) };
    }
  }

  /**
   * Sends `req` to `node` (this node: answered in place) and checks the answer's shape;
   * throws NodeSilent when it does not answer, or not as expected.
   */
  private async ask<T>(node: string, req: AdminRequest, shape: z.ZodType<T>): Promise<T> {
    let answer: unknown;
    if (node === this.opts.nodeId) answer = this.answer(req);
    else {
      try {
        answer = (await this.opts.nc.request(adminSubject(node), JSON.stringify(req), { timeout: this.timeout })).json();
      } catch (err) {
        const gone = err instanceof RequestError && err.isNoResponders();
        throw new NodeSilent(node, gone, err instanceof Error ? err.message : String(err));
      }
    }
    const parsed = shape.safeParse(answer);
    if (parsed.success) return parsed.data;
    const said = typeof answer === 'object' && answer !== null && 'error' in answer ? String((answer as { error: unknown }).error) : 'an answer of another shape';
    throw new NodeSilent(node, false, said);
  }

  /** `ask` for one client's owner: null when it is gone (it holds no clients), 503 when it is silent. */
  private async askOwner<T>(node: string, req: AdminRequest, shape: z.ZodType<T>): Promise<T | null> {
    try {
      return await this.ask(node, req, shape);
    } catch (err) {
      if (!(err instanceof NodeSilent)) throw err;
      if (err.gone) return null;
      throw new DirectoryUnavailableError(err.message);
    }
  }

  private async idsPage(node: string, after: string | null, prefix: string | undefined): Promise<Cursor> {
    const a = await this.ask(node, { op: 'ids', after, limit: IDS_PAGE, ...(prefix !== undefined ? { prefix } : {}) }, idsAnswer);
    return { node, ids: a.ids, pos: 0, more: a.more && a.ids.length > 0, total: a.total };
  }

  /** The views of `ids` on `node`, in requests of bounded size (a client gone meanwhile is left out). */
  private async viewsOf(node: string, ids: readonly string[]): Promise<ConnectedClientView[]> {
    const out: ConnectedClientView[] = [];
    let rest = [...ids];
    while (rest.length > 0) {
      const batch = fitting(rest.slice(0, VIEWS_PER_REQUEST));
      const a = await this.ask(node, { op: 'views', ids: batch }, viewsAnswer);
      // Shape checked above (clientId, node); the rest is the node's ConnectedClientView.
      out.push(...(a.clients as unknown as ConnectedClientView[]));
      rest = rest.slice(Math.min(a.done, batch.length));
    }
    return out;
  }

  /** Nodes with a lease in the nodes bucket, and this one. */
  private async liveNodes(): Promise<string[]> {
    const nodes = new Set([this.opts.nodeId]);
    try {
      const { nodes: kv } = await this.buckets();
      const gate = this.opts.conn;
      const keys = gate !== undefined ? await gate.consumer(() => kv.keys(), (k) => k.stop()) : await kv.keys();
      for await (const node of keys) nodes.add(node);
    } catch (err) {
      throw new DirectoryUnavailableError(`the cluster's node list cannot be read: ${err instanceof Error ? err.message : String(err)}`);
    }
    return [...nodes].sort(compareClientIds);
  }

  /** The node that owns `id` when it is another one; null when none does (or this one). */
  private async ownerElsewhere(id: string): Promise<string | null> {
    const key = clientIdToKey(id);
    if (isCodecRefusal(key)) return null;
    let value: Uint8Array | null;
    try {
      const { sessions } = await this.buckets();
      const entry = await sessions.get(key);
      value = entry !== null && entry.operation === 'PUT' ? entry.value : null;
    } catch (err) {
      throw new DirectoryUnavailableError(`the owner of client id "${id}" cannot be read: ${err instanceof Error ? err.message : String(err)}`);
    }
    const owner = value === null ? null : decodeOwnerRecord(value)?.node;
    return owner === undefined || owner === null || owner === this.opts.nodeId ? null : owner;
  }

  private buckets(): Promise<{ sessions: KV; nodes: KV }> {
    this.kvs ??= (async () => {
      const kvm = new Kvm(this.opts.nc);
      const [sessions, nodes] = await Promise.all([kvm.open(SESSIONS_BUCKET), kvm.open(NODES_BUCKET)]);
      return { sessions, nodes };
    })();
    const kvs = this.kvs;
    kvs.catch(() => {
      if (this.kvs === kvs) this.kvs = null; // tried again on the next request
    });
    return kvs;
  }
}

/** The first client ids of `ids` whose JSON fits ANSWER_BUDGET_BYTES (at least one). */
function fitting(ids: readonly string[]): string[] {
  let bytes = 0;
  let n = 0;
  for (const id of ids) {
    const size = Buffer.byteLength(JSON.stringify(id)) + 1;
    if (n > 0 && bytes + size > ANSWER_BUDGET_BYTES) break;
    bytes += size;
    n++;
  }
  return ids.slice(0, n);
}
