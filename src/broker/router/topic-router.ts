/**
 * Subscription routing: a topic trie from filter levels to subscribers, with shared
 * subscription groups picked round-robin. Owns: who is subscribed to what on this node.
 * Must not: deliver anything (the broker does), or know about sockets.
 *
 * Cluster door: `match` answers for local subscribers only; a cluster layer adds a
 * filter → node table beside it.
 */
import type { SubscriptionOptions } from '../ports.js';

export interface RoutableSubscriber {
  readonly clientId: string;
  /** True when a connection is attached: shared groups prefer online members. */
  readonly online: boolean;
}

export interface RouteEntry<S extends RoutableSubscriber> {
  subscriber: S;
  options: SubscriptionOptions;
}

class SharedGroup<S extends RoutableSubscriber> {
  readonly members: RouteEntry<S>[] = [];
  private next = 0;

  upsert(entry: RouteEntry<S>): boolean {
    const i = this.members.findIndex((m) => m.subscriber.clientId === entry.subscriber.clientId);
    if (i >= 0) {
      this.members[i] = entry;
      return false;
    }
    this.members.push(entry);
    return true;
  }

  remove(clientId: string): boolean {
    const i = this.members.findIndex((m) => m.subscriber.clientId === clientId);
    if (i < 0) return false;
    this.members.splice(i, 1);
    if (this.next > i) this.next--;
    return true;
  }

  /** Round-robin over the group, skipping offline members while an online one exists. */
  pick(): RouteEntry<S> | undefined {
    const n = this.members.length;
    for (let k = 0; k < n; k++) {
      const idx = (this.next + k) % n;
      const m = this.members[idx]!;
      if (m.subscriber.online) {
        this.next = (idx + 1) % n;
        return m;
      }
    }
    if (n === 0) return undefined;
    const idx = this.next % n;
    this.next = (idx + 1) % n;
    return this.members[idx];
  }
}

class TrieNode<S extends RoutableSubscriber> {
  children: Map<string, TrieNode<S>> | null = null;
  subscribers: Map<string, RouteEntry<S>> | null = null;
  shared: Map<string, SharedGroup<S>> | null = null;
  /** `subscribers` as an array, rebuilt after a change: matching walks it without an iterator. */
  private list: Array<RouteEntry<S>> | null = null;

  setSubscriber(clientId: string, entry: RouteEntry<S>): void {
    (this.subscribers ??= new Map()).set(clientId, entry);
    this.list = null;
  }

  deleteSubscriber(clientId: string): boolean {
    this.list = null;
    return this.subscribers?.delete(clientId) ?? false;
  }

  subscriberList(): ReadonlyArray<RouteEntry<S>> {
    return (this.list ??= this.subscribers === null ? [] : [...this.subscribers.values()]);
  }

  isEmpty(): boolean {
    return (this.children === null || this.children.size === 0) && (this.subscribers === null || this.subscribers.size === 0) && (this.shared === null || this.shared.size === 0);
  }
}

/**
 * The subscriptions one topic matched, in the order found: `entries[i]` came from a shared
 * group when `shared[i]`. Reused from publish to publish (takeMatches/releaseMatches), so a
 * match costs no closure, array or object: the fan-out's garbage was most of a message's.
 */
export class MatchList<S extends RoutableSubscriber> {
  readonly entries: Array<RouteEntry<S> | undefined> = [];
  readonly shared: boolean[] = [];
  length = 0;

  add(entry: RouteEntry<S>, shared: boolean): void {
    this.entries[this.length] = entry;
    this.shared[this.length] = shared;
    this.length++;
  }

  /** Forgets the entries (no subscription is kept alive by a list in the pool). */
  clear(): void {
    for (let i = 0; i < this.length; i++) this.entries[i] = undefined;
    this.length = 0;
  }
}

export class TopicRouter<S extends RoutableSubscriber> {
  private readonly root = new TrieNode<S>();
  private count = 0;

  /** Number of subscriptions (a shared group member counts once). */
  get size(): number {
    return this.count;
  }

  /** Adds or replaces a subscription. Returns true when it is new. */
  add(filter: string, entry: RouteEntry<S>, shareGroup?: string): boolean {
    let node = this.root;
    for (const level of filter.split('/')) {
      node.children ??= new Map();
      let child = node.children.get(level);
      if (child === undefined) {
        child = new TrieNode<S>();
        node.children.set(level, child);
      }
      node = child;
    }
    let added: boolean;
    if (shareGroup !== undefined) {
      node.shared ??= new Map();
      let group = node.shared.get(shareGroup);
      if (group === undefined) {
        group = new SharedGroup<S>();
        node.shared.set(shareGroup, group);
      }
      added = group.upsert(entry);
    } else {
      added = node.subscribers?.has(entry.subscriber.clientId) !== true;
      node.setSubscriber(entry.subscriber.clientId, entry);
    }
    if (added) this.count++;
    return added;
  }

  /** Removes a subscription. Returns true when it existed. */
  remove(filter: string, clientId: string, shareGroup?: string): boolean {
    const path: Array<[TrieNode<S>, string]> = [];
    let node: TrieNode<S> | undefined = this.root;
    for (const level of filter.split('/')) {
      const child: TrieNode<S> | undefined = node.children?.get(level);
      if (child === undefined) return false;
      path.push([node, level]);
      node = child;
    }
    let removed = false;
    if (shareGroup !== undefined) {
      const group = node.shared?.get(shareGroup);
      if (group !== undefined) {
        removed = group.remove(clientId);
        if (group.members.length === 0) node.shared!.delete(shareGroup);
      }
    } else {
      removed = node.deleteSubscriber(clientId);
    }
    if (removed) this.count--;
    // Prune empty nodes so a churn of unique filters does not leak memory.
    for (let i = path.length - 1; i >= 0 && node.isEmpty(); i--) {
      const [parent, level] = path[i]!;
      parent.children!.delete(level);
      node = parent;
    }
    return removed;
  }

  /**
   * Adds to `out` every subscription matching `topic`; for each shared group (unless
   * `includeShared` is false), once, with the member picked round-robin. A leading wildcard
   * never matches a `$` topic [MQTT-4.7.2-1]. `levels` is `topic` split at '/', when the
   * caller has it already.
   */
  match(topic: string, includeShared: boolean, out: MatchList<S>, levels: readonly string[] = topic.split('/')): void {
    this.walk(this.root, levels, 0, topic.charCodeAt(0) === 0x24, includeShared, out);
  }

  /**
   * One member (round-robin, online first) of shared group `group` subscribed with exactly
   * `filter`: the cluster balanced one message of that group to this node.
   */
  pickShared(filter: string, group: string): RouteEntry<S> | undefined {
    let node: TrieNode<S> | undefined = this.root;
    for (const level of filter.split('/')) {
      node = node.children?.get(level);
      if (node === undefined) return undefined;
    }
    return node.shared?.get(group)?.pick();
  }

  private walk(node: TrieNode<S>, levels: readonly string[], depth: number, dollar: boolean, shared: boolean, out: MatchList<S>): void {
    const children = node.children;
    if (depth === levels.length) {
      this.emit(node, shared, out);
      // "a/#" also matches "a" [MQTT-4.7.1-2].
      const hash = children?.get('#');
      if (hash !== undefined) this.emit(hash, shared, out);
      return;
    }
    if (children === null) return;
    const wildcardsAllowed = !(depth === 0 && dollar);
    if (wildcardsAllowed) {
      const hash = children.get('#');
      if (hash !== undefined) this.emit(hash, shared, out);
      const plus = children.get('+');
      if (plus !== undefined) this.walk(plus, levels, depth + 1, dollar, shared, out);
    }
    const exact = children.get(levels[depth]!);
    if (exact !== undefined) this.walk(exact, levels, depth + 1, dollar, shared, out);
  }

  private emit(node: TrieNode<S>, shared: boolean, out: MatchList<S>): void {
    if (node.subscribers !== null) {
      const list = node.subscriberList();
      for (let i = 0; i < list.length; i++) out.add(list[i]!, false);
    }
    if (shared && node.shared !== null) {
      for (const group of node.shared.values()) {
        const picked = group.pick();
        if (picked !== undefined) out.add(picked, true);
      }
    }
  }
}
