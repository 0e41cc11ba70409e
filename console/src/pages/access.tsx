/**
 * Access: the roles, the bindings and the lint findings of the access policy, and the
 * Explain form (which rule decides a publish or subscribe for an identity). Owns: this
 * page. Must not: evaluate rules itself (the server explains).
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { get, messageOf, post } from '../api';
import { ErrorLine, Field, PageTitle, RecordTable, ScrollBox, Select, text, useLoad } from '../ui';

interface Role {
  name: string;
  rules: unknown[];
  source?: string;
}

interface Finding {
  severity: string;
  message: string;
  role?: string | null;
  index?: number | null;
  rule?: unknown;
}

interface Explanation {
  decision: 'allow' | 'deny';
  action?: string;
  topic?: string;
  rule?: { role: string; index: number; text: string } | null;
  reason?: string;
  roles?: string[];
  qos?: number;
  quota?: unknown;
}

function Roles(): JSX.Element {
  const roles = useLoad(() => get<{ roles: Role[] }>('/api/v1/roles'), []);
  return (
    <section aria-labelledby="roles-h">
      <h2 id="roles-h">Roles</h2>
      <ErrorLine error={roles.error} />
      {roles.data !== null && roles.data.roles.length === 0 && <p class="muted">No roles.</p>}
      {roles.data !== null && roles.data.roles.length > 0 && (
        <ScrollBox label="Roles">
          <table aria-label="Roles">
            <thead>
              <tr>
                <th scope="col">Role</th>
                <th scope="col">Source</th>
                <th scope="col">Rules</th>
              </tr>
            </thead>
            <tbody>
              {roles.data.roles.map((r) => (
                <tr key={r.name}>
                  <td>{r.name}</td>
                  <td>{text(r.source)}</td>
                  <td class="wrap">
                    {r.rules.length === 0 ? (
                      <span class="muted">no rules</span>
                    ) : (
                      <ol class="rules">
                        {r.rules.map((rule, i) => (
                          <li key={i} class="mono">
                            {typeof rule === 'string' ? rule : JSON.stringify(rule)}
                          </li>
                        ))}
                      </ol>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </ScrollBox>
      )}
    </section>
  );
}

function Bindings(): JSX.Element {
  const b = useLoad(() => get<{ bindings: object[] }>('/api/v1/bindings'), []);
  return (
    <section aria-labelledby="bindings-h">
      <h2 id="bindings-h">Bindings</h2>
      <ErrorLine error={b.error} />
      {b.data !== null && <RecordTable label="Bindings" rows={b.data.bindings} empty="No bindings." />}
    </section>
  );
}

function Lint(): JSX.Element {
  const lint = useLoad(() => get<{ findings: Finding[] }>('/api/v1/acl/lint'), []);
  const findings = lint.data?.findings ?? [];
  return (
    <section aria-labelledby="lint-h">
      <h2 id="lint-h">Lint findings</h2>
      <ErrorLine error={lint.error} />
      {lint.data !== null && findings.length === 0 && <p class="ok">No findings: the policy has no known problems.</p>}
      {findings.length > 0 && (
        <ul aria-label="Lint findings" data-testid="lint-findings">
          {findings.map((f, i) => (
            <li key={i}>
              <strong class={f.severity === 'error' ? 'bad' : 'warn'}>{f.severity}</strong>
              {f.role != null ? ` (role ${f.role}${f.index != null ? ` rule #${f.index}` : ''})` : ''}: {f.message}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Explain(): JSX.Element {
  const [clientId, setClientId] = useState('');
  const [username, setUsername] = useState('');
  const [action, setAction] = useState('publish');
  const [topic, setTopic] = useState('');
  const [result, setResult] = useState<Explanation | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  return (
    <section aria-labelledby="explain-h">
      <h2 id="explain-h">Explain a decision</h2>
      <form
        aria-label="Explain"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError('');
          setResult(null);
          try {
            // The route takes the topic under the action's name ({publish: t} or {subscribe: t}).
            const body = { clientId: clientId.trim(), ...(username.trim() !== '' ? { username: username.trim() } : {}), [action]: topic };
            setResult(await post<Explanation>('/api/v1/acl/explain', body));
          } catch (err) {
            setError(`Explain failed: ${messageOf(err)}`);
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field id="explain-client" label="Client id" value={clientId} onInput={setClientId} required />
        <Field id="explain-username" label="Username (optional)" value={username} onInput={setUsername} />
        <Select
          id="explain-action"
          label="Action"
          value={action}
          options={[
            ['publish', 'publish'],
            ['subscribe', 'subscribe'],
          ]}
          onChange={setAction}
        />
        <Field id="explain-topic" label="Topic" value={topic} onInput={setTopic} required />
        <button type="submit" disabled={busy}>
          Explain
        </button>
      </form>
      <ErrorLine error={error} />
      <div role="status" aria-live="polite" data-testid="explain-result" class={result === null ? '' : 'box'}>
        {result !== null && (
          <>
            <p class={`decision ${result.decision === 'allow' ? 'ok' : 'bad'}`}>{result.decision === 'allow' ? 'Allowed' : 'Denied'}</p>
            <dl class="kv">
              {result.action !== undefined && (
                <>
                  <dt>Action</dt>
                  <dd>
                    {result.action} <span class="mono">{result.topic}</span>
                  </dd>
                </>
              )}
              <dt>Reason</dt>
              <dd>{text(result.reason)}</dd>
              <dt>Deciding rule</dt>
              <dd class="mono">{result.rule == null ? 'none (default deny)' : `${result.rule.role} #${result.rule.index}: ${result.rule.text}`}</dd>
              <dt>Roles</dt>
              <dd>{text(result.roles)}</dd>
              {result.qos !== undefined && (
                <>
                  <dt>Granted QoS</dt>
                  <dd>{result.qos}</dd>
                </>
              )}
            </dl>
            {result.quota !== undefined && (
              <details>
                <summary>Quota</summary>
                <pre>{JSON.stringify(result.quota, null, 2)}</pre>
              </details>
            )}
          </>
        )}
      </div>
    </section>
  );
}

export function Access(): JSX.Element {
  return (
    <>
      <PageTitle>Access</PageTitle>
      <Explain />
      <Roles />
      <Bindings />
      <Lint />
    </>
  );
}
