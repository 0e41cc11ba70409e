/**
 * The jobs topics (issue 14): `$bastion/jobs/<identity>/get`, `…/start-next`,
 * `…/<jobId>/get` (`$next` allowed), `…/<jobId>/update`, answers on `<request>/accepted`
 * and `<request>/rejected`, and the push `…/notify-next`. Owns: parsing and naming them.
 * Must not: authorize or answer.
 */

export const JOBS_PREFIX = '$bastion/jobs/';

export type JobRequest =
  | { kind: 'get'; identity: string }
  | { kind: 'start-next'; identity: string }
  | { kind: 'describe'; identity: string; jobId: string }
  | { kind: 'update'; identity: string; jobId: string };

/** A job id: letters, digits, `-` and `_`, 1–64 characters (AWS's rule). */
export const JOB_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `s` can be a device identity in a jobs topic (no `/`, `+`, `#`; 1–128 characters). */
export function isJobIdentity(s: string): boolean {
  return s.length > 0 && s.length <= 128 && !/[/+#\u0000]/.test(s);
}

/** The request a topic is, or null (not a jobs request topic). */
export function jobRequestOf(topic: string): JobRequest | null {
  if (!topic.startsWith(JOBS_PREFIX)) return null;
  const parts = topic.slice(JOBS_PREFIX.length).split('/');
  const identity = parts[0]!;
  if (!isJobIdentity(identity)) return null;
  if (parts.length === 2) {
    if (parts[1] === 'get') return { kind: 'get', identity };
    if (parts[1] === 'start-next') return { kind: 'start-next', identity };
    return null;
  }
  if (parts.length === 3) {
    const jobId = parts[1]!;
    if (parts[2] === 'get' && (jobId === '$next' || JOB_ID.test(jobId))) return { kind: 'describe', identity, jobId };
    if (parts[2] === 'update' && JOB_ID.test(jobId)) return { kind: 'update', identity, jobId };
  }
  return null;
}

/** The identity segment of a jobs topic or filter (null: not one, or a wildcard there). */
export function jobsIdentityOf(topicOrFilter: string): string | null {
  if (!topicOrFilter.startsWith(JOBS_PREFIX)) return null;
  const id = topicOrFilter.slice(JOBS_PREFIX.length).split('/')[0]!;
  return isJobIdentity(id) ? id : null;
}

export function notifyNextTopic(identity: string): string {
  return `${JOBS_PREFIX}${identity}/notify-next`;
}
