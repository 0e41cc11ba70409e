/**
 * Small shared pieces of the console: loading data, the error line, scrollable tables,
 * generic record tables and value formatting. Owns: these helpers. Must not: call the
 * API with paths of its own (pages pass the loader).
 */
import type { ComponentChildren, InputHTMLAttributes, JSX } from 'preact';
import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, messageOf, type Session } from './api';

export const SessionContext = createContext<Session | null>(null);

/** True when the signed-in operator may change things (admin scope). */
export function useCanChange(): boolean {
  return useContext(SessionContext)?.scope === 'admin';
}

export interface Loaded<T> {
  data: T | null;
  error: string;
  status: number;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` now and whenever a dependency changes; a late answer for old inputs is dropped. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | null; error: string; status: number; loading: boolean }>({ data: null, error: '', status: 0, loading: true });
  const [tick, setTick] = useState(0);
  const generation = useRef(0);
  useEffect(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => {
        if (mine === generation.current) setState({ data, error: '', status: 200, loading: false });
      },
      (err: unknown) => {
        if (mine === generation.current) setState({ data: null, error: messageOf(err), status: err instanceof ApiError ? err.status : 0, loading: false });
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** The visible, announced error line (role="alert"); nothing when there is no error. */
export function ErrorLine({ error }: { error: string }): JSX.Element | null {
  if (error === '') return null;
  return (
    <p role="alert" class="error">
      {error}
    </p>
  );
}

/** A table's container: scrolls sideways inside itself on a narrow screen, reachable by keyboard. */
export function ScrollBox({ label, children }: { label: string; children: ComponentChildren }): JSX.Element {
  return (
    <div class="scroll" role="region" aria-label={`${label} (scrollable)`} tabIndex={0}>
      {children}
    </div>
  );
}

export function PageTitle({ children }: { children: ComponentChildren }): JSX.Element {
  // The router moves focus to the page's heading on navigation (tabIndex -1 makes it focusable).
  return (
    <h1 id="page-title" tabIndex={-1}>
      {children}
    </h1>
  );
}

/** A date/time (ISO string or ms since the epoch) in the operator's locale; "—" for none. */
export function when(v: unknown): string {
  if (v === null || v === undefined || v === '') return '—';
  const d = typeof v === 'number' ? new Date(v) : new Date(String(v));
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A value as short text for a table cell. */
export function text(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v === '' ? '—' : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number')) return v.length === 0 ? '—' : v.join(', ');
  return JSON.stringify(v);
}

/** Keys of the records, in first-seen order. */
function columnsOf(rows: object[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
  return [...seen];
}

/** A record key as a column heading: `appliedAt` → "Applied at". */
function heading(key: string): string {
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A table of arbitrary records (bindings, restrictions, findings): one column per key. */
export function RecordTable({ label, rows, empty, actions }: { label: string; rows: object[]; empty: string; actions?: (row: object) => ComponentChildren }): JSX.Element {
  if (rows.length === 0) return <p class="muted">{empty}</p>;
  const cols = columnsOf(rows);
  return (
    <ScrollBox label={label}>
      <table aria-label={label}>
        <thead>
          <tr>
            {cols.map((c) => (
              <th scope="col" key={c}>
                {heading(c)}
              </th>
            ))}
            {actions !== undefined && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {cols.map((c) => {
                const v = (r as Record<string, unknown>)[c];
                return <td key={c}>{/At$|Ms$|^ts$/.test(c) && (typeof v === 'number' || typeof v === 'string') ? when(v) : text(v)}</td>;
              })}
              {actions !== undefined && <td>{actions(r)}</td>}
            </tr>
          ))}
        </tbody>
      </table>
    </ScrollBox>
  );
}

/** A <select> with its label. */
export function Select({ label, value, options, onChange, id }: { label: string; value: string; options: Array<[string, string]>; onChange: (v: string) => void; id: string }): JSX.Element {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange((e.currentTarget as HTMLSelectElement).value)}>
        {options.map(([v, l]) => (
          <option key={v} value={v}>
            {l}
          </option>
        ))}
      </select>
    </div>
  );
}

/** A text-like <input> with its label. */
export function Field({
  label,
  value,
  onInput,
  id,
  type = 'text',
  required = false,
  placeholder,
  autocomplete,
  min,
}: {
  label: string;
  value: string;
  onInput: (v: string) => void;
  id: string;
  type?: 'text' | 'search' | 'number' | 'datetime-local';
  required?: boolean;
  placeholder?: string;
  autocomplete?: string;
  min?: number;
}): JSX.Element {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <input
        {...({
          id,
          type,
          value,
          required,
          placeholder,
          autocomplete: autocomplete ?? 'off',
          min,
          onInput: (e: Event) => onInput((e.currentTarget as HTMLInputElement).value),
        } as InputHTMLAttributes<HTMLInputElement>)}
      />
    </div>
  );
}
