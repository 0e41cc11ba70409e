/**
 * Topic name and topic filter rules of MQTT 3.1.1 §4.7 and 5.0 §4.7, and shared
 * subscription parsing (§4.8.2). Owns: validity and matching. Must not: store anything.
 */

/** A valid topic name: non-empty, no wildcards, no NUL [MQTT-4.7.3-1] [MQTT-3.3.2-2]. */
export function isValidTopicName(topic: string): boolean {
  if (topic.length === 0 || topic.length > 65535) return false;
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x23 /* # */ || c === 0x2b /* + */ || c === 0) return false;
  }
  return true;
}

/**
 * A valid topic filter: '#' only as the whole last level, '+' only as a whole level
 * [MQTT-4.7.1-2] [MQTT-4.7.1-3].
 */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > 65535) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('\u0000')) return false;
    if (level.includes('#')) {
      if (level !== '#' || i !== levels.length - 1) return false;
    }
    if (level.includes('+') && level !== '+') return false;
  }
  return true;
}

export interface SharedFilter {
  group: string;
  filter: string;
}

/**
 * Parses `$share/{group}/{filter}`. Returns null for a non-shared filter, and throws
 * nothing: an invalid shared filter returns `{ group: '', filter: '' }` so the caller
 * answers TopicFilterInvalid [MQTT-4.8.2-1] [MQTT-4.8.2-2].
 */
export function parseSharedFilter(filter: string): SharedFilter | null {
  if (!filter.startsWith('$share/')) return null;
  const rest = filter.slice(7);
  const slash = rest.indexOf('/');
  if (slash <= 0) return { group: '', filter: '' };
  const group = rest.slice(0, slash);
  if (group.includes('+') || group.includes('#')) return { group: '', filter: '' };
  const inner = rest.slice(slash + 1);
  if (!isValidTopicFilter(inner)) return { group: '', filter: '' };
  return { group, filter: inner };
}

/**
 * Does `topic` match `filter`? A filter starting with a wildcard does not match a topic
 * starting with '$' [MQTT-4.7.2-1].
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 /* $ */) {
    const f0 = filter.charCodeAt(0);
    if (f0 === 0x2b || f0 === 0x23) return false;
  }
  let fi = 0;
  let ti = 0;
  const fl = filter.length;
  const tl = topic.length;
  while (fi < fl) {
    const fc = filter.charCodeAt(fi);
    if (fc === 0x23 /* # */) return true;
    if (fc === 0x2b /* + */) {
      // Consume one level of the topic.
      while (ti < tl && topic.charCodeAt(ti) !== 0x2f) ti++;
      fi++;
    } else {
      if (ti >= tl) {
        // "a/#" matches "a": the filter has "/#" left.
        return fc === 0x2f && fi + 2 === fl && filter.charCodeAt(fi + 1) === 0x23;
      }
      if (fc !== topic.charCodeAt(ti)) return false;
      fi++;
      ti++;
    }
    if (fi === fl) return ti === tl;
  }
  return ti === tl;
}
