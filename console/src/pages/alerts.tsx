/**
 * Alerts: behaviour detection's alerts (by state), the restrictions in force (release one)
 * and the last security audit report (run one). Owns: this page. Must not: show a broken
 * page when the defender is not configured (501): its message stands in for the tables.
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { get, messageOf, post, withQuery } from '../api';
import { ErrorLine, PageTitle, RecordTable, ScrollBox, Select, text, useCanChange, useLoad, when } from '../ui';

interface Alert {
  id: number;
  rule: string;
  identity: string;
  role?: string;
  state: string;
  value?: number;
  threshold?: number;
  items?: string[];
  raisedAt: number | string;
  node?: string;
  dryRun?: boolean;
  actions?: Array<{ action: string; outcome: string; detail?: string }>;
}

interface Restriction {
  identity: string;
  kind: string;
  alertId?: number;
  appliedAt?: number | string;
  expiresAt?: number | string | null;
}

interface Report {
  findings?: Array<{ severity: string; check?: string; subject?: string; message: string; fix?: string }>;
  counts?: Record<string, number>;
  checkedAt?: string;
}

const num = (n: number | undefined): string => (n === undefined ? '—' : Number.isInteger(n) ? String(n) : n.toFixed(2));

function AlertTable({ state }: { state: string }): JSX.Element {
  const alerts = useLoad(() => get<{ total: number; alerts: Alert[] }>(withQuery('/api/v1/defender/alerts', { state, limit: 200 })), [state]);
  const list = alerts.data?.alerts ?? [];
  return (
    <>
      <ErrorLine error={alerts.error} />
      {alerts.data !== null && (
        <p class="muted" data-testid="alerts-count">
          {list.length} of {alerts.data.total} alerts shown
        </p>
      )}
      <ScrollBox label="Alerts">
        <table aria-label="Alerts">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Rule</th>
              <th scope="col">Identity</th>
              <th scope="col">State</th>
              <th scope="col">Value / threshold</th>
              <th scope="col">Raised</th>
              <th scope="col">Node</th>
              <th scope="col">Actions taken</th>
            </tr>
          </thead>
          <tbody>
            {list.map((a) => (
              <tr key={a.id}>
                <td>{a.id}</td>
                <td>{a.rule}</td>
                <td>{a.identity}</td>
                <td class={a.state === 'active' ? 'bad' : ''}>{a.state}</td>
                <td>
                  {num(a.value)} / {num(a.threshold)}
                </td>
                <td>{when(a.raisedAt)}</td>
                <td>{text(a.node)}</td>
                <td class="wrap">
                  {(a.actions ?? []).map((x) => `${x.action}: ${x.outcome}`).join(', ') || '—'}
                  {a.dryRun === true ? ' (dry run)' : ''}
                </td>
              </tr>
            ))}
            {alerts.data !== null && list.length === 0 && (
              <tr>
                <td colSpan={8} class="muted">
                  No alerts.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </ScrollBox>
    </>
  );
}

function Restrictions(): JSX.Element {
  const canChange = useCanChange();
  const r = useLoad(() => get<{ restrictions: Restriction[] }>('/api/v1/defender/restrictions'), []);
  const [msg, setMsg] = useState('');
  const [error, setError] = useState('');
  const release = async (identity: string): Promise<void> => {
    setError('');
    setMsg('');
    try {
      const out = await post<{ alerts: number; restrictions: Array<{ kind: string }> }>('/api/v1/defender/release', { identity });
      setMsg(`Released ${identity}: ${out.restrictions.length} restriction(s) lifted, ${out.alerts} alert(s) released.`);
      r.reload();
    } catch (err) {
      setError(`Release failed: ${messageOf(err)}`);
    }
  };
  return (
    <section aria-labelledby="restrictions-h">
      <h2 id="restrictions-h">Restrictions in force</h2>
      <ErrorLine error={r.error} />
      <ErrorLine error={error} />
      {msg !== '' && (
        <p role="status" class="notice">
          {msg}
        </p>
      )}
      {r.data !== null && (
        <RecordTable
          label="Restrictions"
          rows={r.data.restrictions}
          empty="No restrictions in force."
          {...(canChange
            ? {
                actions: (row: object) => {
                  const id = (row as Restriction).identity;
                  return (
                    <button type="button" class="secondary" onClick={() => void release(id)}>
                      Release<span class="sr"> {id}</span>
                    </button>
                  );
                },
              }
            : {})}
        />
      )}
    </section>
  );
}

function SecurityAudit(): JSX.Element {
  const canChange = useCanChange();
  const last = useLoad(() => get<Report>('/api/v1/defender/audit'), []);
  const [ran, setRan] = useState<Report | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const report = ran ?? last.data;
  const findings = report?.findings ?? [];
  return (
    <section aria-labelledby="secaudit-h">
      <h2 id="secaudit-h">Security audit</h2>
      {last.status === 404 && ran === null && <p class="muted">No security audit has run yet.</p>}
      {last.status !== 404 && <ErrorLine error={last.error} />}
      <ErrorLine error={error} />
      {canChange && (
        <button
          type="button"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            setError('');
            try {
              setRan(await post<Report>('/api/v1/defender/audit'));
            } catch (err) {
              setError(`Run audit failed: ${messageOf(err)}`);
            } finally {
              setBusy(false);
            }
          }}
        >
          Run audit
        </button>
      )}
      {report != null && (
        <div data-testid="security-audit" aria-live="polite">
          <p>
            Checked {when(report.checkedAt)}:{' '}
            {findings.length === 0
              ? 'no findings.'
              : `${findings.length} finding(s)${report.counts !== undefined ? ` (${Object.entries(report.counts).map(([k, v]) => `${v} ${k}`).join(', ')})` : ''}.`}
          </p>
          {findings.length > 0 && (
            <ul aria-label="Security audit findings">
              {findings.map((f, i) => (
                <li key={i}>
                  <strong class={f.severity === 'critical' || f.severity === 'high' ? 'bad' : 'warn'}>{f.severity}</strong> {f.check ?? ''} {f.subject ?? ''}: {f.message}
                  {f.fix !== undefined && <div class="muted">Fix: {f.fix}</div>}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}

export function Alerts(): JSX.Element {
  const [state, setState] = useState('active');
  // One probe decides whether the defender exists: a 501 replaces every table with its message.
  const probe = useLoad(() => get<{ restrictions: unknown[] }>('/api/v1/defender/restrictions'), []);
  const off = probe.error !== '' && probe.status === 501;
  return (
    <>
      <PageTitle>Alerts</PageTitle>
      {off && (
        <p role="status" class="notice" data-testid="defender-off">
          {probe.error}
        </p>
      )}
      {!off && <ErrorLine error={probe.error} />}
      {!off && probe.data !== null && (
        <>
          <section aria-labelledby="alerts-h">
            <h2 id="alerts-h">Behaviour alerts</h2>
            <div class="filters">
              <Select
                id="alert-state"
                label="State"
                value={state}
                options={[
                  ['active', 'active'],
                  ['cleared', 'cleared'],
                  ['released', 'released'],
                  ['', 'any'],
                ]}
                onChange={setState}
              />
            </div>
            <AlertTable state={state} />
          </section>
          <Restrictions />
          <SecurityAudit />
        </>
      )}
    </>
  );
}

