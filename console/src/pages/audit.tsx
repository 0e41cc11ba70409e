/**
 * Audit: the audit log's records (filters, newest first, "Older" pages back by sequence
 * number), the hash chain's state (verify on demand) and an NDJSON export of the current
 * filters. Owns: this page. Must not: judge the chain itself (the server verifies).
 */
import { Fragment, type JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { get, messageOf, withQuery } from '../api';
import { ErrorLine, Field, PageTitle, ScrollBox, useLoad, when } from '../ui';

interface AuditRecord {
  seq: number;
  ts: number | string;
  type: string;
  clientId?: string | null;
  event: unknown;
}

interface Verify {
  ok: boolean;
  records: number;
  checkpoints?: number;
  lastSignedSeq?: number | null;
  problem: null | { kind: string; message: string };
  warnings?: string[];
}

interface Filters {
  since: string;
  until: string;
  type: string;
  clientId: string;
}

const SUMMARY_MAX = 120;

/** A datetime-local value ("2026-12-07T21:50") as an ISO instant in the operator's zone; '' stays ''. */
function iso(local: string): string {
  if (local === '') return '';
  const t = new Date(local).getTime();
  return Number.isNaN(t) ? '' : new Date(t).toISOString();
}

function query(f: Filters): Record<string, string> {
  return { since: iso(f.since), until: iso(f.until), type: f.type.trim(), clientId: f.clientId.trim() };
}

function ChainStatus(): JSX.Element {
  const [state, setState] = useState<{ verify: Verify | null; error: string; busy: boolean }>({ verify: null, error: '', busy: false });
  const run = async (): Promise<void> => {
    setState((s) => ({ ...s, busy: true, error: '' }));
    try {
      setState({ verify: await get<Verify>('/api/v1/audit/verify'), error: '', busy: false });
    } catch (err) {
      setState({ verify: null, error: `Verify failed: ${messageOf(err)}`, busy: false });
    }
  };
  // Verified once when the page opens; the button runs it again.
  useEffect(() => {
    void run();
  }, []);
  const v = state.verify;
  return (
    <section aria-labelledby="chain-h" class="box">
      <h2 id="chain-h">Chain status</h2>
      <div role="status" aria-live="polite" data-testid="chain-status">
                {state.busy && <p>Verifying…</p>}
        {v !== null && v.ok && (
          <p class="ok">
            <strong>Chain intact: {v.records} records</strong>
            {v.checkpoints !== undefined ? `, ${v.checkpoints} signed checkpoints` : ''}
            {v.lastSignedSeq != null && v.lastSignedSeq > 0 ? `, last signed at seq ${v.lastSignedSeq}` : ''}.
          </p>
        )}
        {v !== null && !v.ok && (
          <p class="bad">
            <strong>Chain broken</strong>
            {v.problem !== null ? ` (${v.problem.kind}): ${v.problem.message}` : ''} — {v.records} records read.
          </p>
        )}
        {v !== null && (v.warnings ?? []).length > 0 && (
          <ul>
            {v.warnings!.map((w, i) => (
              <li key={i} class="warn">
                {typeof w === 'string' ? w : JSON.stringify(w)}
              </li>
            ))}
          </ul>
        )}
      </div>
      <ErrorLine error={state.error} />
      <button type="button" class="secondary" disabled={state.busy} onClick={() => void run()}>
        Verify chain
      </button>
    </section>
  );
}

export function Audit(): JSX.Element {
  const [form, setForm] = useState<Filters>({ since: '', until: '', type: '', clientId: '' });
  const [applied, setApplied] = useState<Filters>(form);
  // The pages read so far: each "Older" appends the next page before the last seq seen.
  const [pages, setPages] = useState<Array<number | null>>([null]);
  const [open, setOpen] = useState<Set<number>>(new Set());
  const [more, setMore] = useState<{ records: AuditRecord[]; next: number | null; error: string }>({ records: [], next: null, error: '' });

  const first = useLoad(() => get<{ records: AuditRecord[]; nextBeforeSeq: number | null }>(withQuery('/api/v1/audit', { ...query(applied), limit: 100 })), [applied]);
  const records = [...(first.data?.records ?? []), ...more.records];
  const next = pages.length > 1 ? more.next : (first.data?.nextBeforeSeq ?? null);

  const older = async (): Promise<void> => {
    if (next === null) return;
    try {
      const r = await get<{ records: AuditRecord[]; nextBeforeSeq: number | null }>(withQuery('/api/v1/audit', { ...query(applied), beforeSeq: next, limit: 100 }));
      setMore((m) => ({ records: [...m.records, ...r.records], next: r.nextBeforeSeq, error: '' }));
      setPages((p) => [...p, next]);
    } catch (err) {
      setMore((m) => ({ ...m, error: `Loading older records failed: ${messageOf(err)}` }));
    }
  };

  const set = (k: keyof Filters) => (v: string) => setForm((f) => ({ ...f, [k]: v }));
  const toggle = (seq: number): void =>
    setOpen((o) => {
      const n = new Set(o);
      if (n.has(seq)) n.delete(seq);
      else n.add(seq);
      return n;
    });

  return (
    <>
      <PageTitle>Audit</PageTitle>
      <form
        role="search"
        aria-label="Filter audit records"
        onSubmit={(e) => {
          e.preventDefault();
          setPages([null]);
          setMore({ records: [], next: null, error: '' });
          setOpen(new Set());
          setApplied({ ...form });
          if (JSON.stringify(form) === JSON.stringify(applied)) first.reload();
        }}
      >
        <Field id="audit-since" label="Since" type="datetime-local" value={form.since} onInput={set('since')} />
        <Field id="audit-until" label="Until" type="datetime-local" value={form.until} onInput={set('until')} />
        <Field id="audit-type" label="Type" value={form.type} onInput={set('type')} placeholder="e.g. admin.change" />
        <Field id="audit-client" label="Client id" value={form.clientId} onInput={set('clientId')} />
        <button type="submit">Apply</button>
        <a class="button secondary" href={withQuery('/api/v1/audit/export', query(applied))} download="audit.ndjson">
          Export
        </a>
      </form>
      <ChainStatus />
      <ErrorLine error={first.error} />
      <ScrollBox label="Audit records">
        <table aria-label="Audit records">
          <thead>
            <tr>
              <th scope="col">Seq</th>
              <th scope="col">Time</th>
              <th scope="col">Type</th>
              <th scope="col">Client</th>
              <th scope="col">Summary</th>
            </tr>
          </thead>
          <tbody>
            {records.map((r) => {
              const full = JSON.stringify(r.event);
              const long = full.length > SUMMARY_MAX;
              const isOpen = open.has(r.seq);
              return (
                <Fragment key={r.seq}>
                  <tr>
                    <td>{r.seq}</td>
                    <td>{when(r.ts)}</td>
                    <td>{r.type}</td>
                    <td>{r.clientId ?? '—'}</td>
                    <td class="wrap mono">
                      {long ? `${full.slice(0, SUMMARY_MAX)}…` : full}{' '}
                      {long && (
                        <button type="button" class="link" aria-expanded={isOpen} onClick={() => toggle(r.seq)}>
                          {isOpen ? 'Show less' : 'Show all'}
                          <span class="sr"> of record {r.seq}</span>
                        </button>
                      )}
                    </td>
                  </tr>
                  {isOpen && (
                    <tr class="subrow">
                      <td colSpan={5}>
                        <pre>{JSON.stringify(r.event, null, 2)}</pre>
                      </td>
                    </tr>
                  )}
                </Fragment>
              );
            })}
            {first.data !== null && records.length === 0 && (
              <tr>
                <td colSpan={5} class="muted">
                  No audit record matches.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </ScrollBox>
      <ErrorLine error={more.error} />
      <div class="row pager">
        <span data-testid="audit-count">{records.length} records shown</span>
        <button type="button" class="secondary" disabled={next === null} onClick={() => void older()}>
          Older
        </button>
      </div>
    </>
  );
}
