/**
 * Clients: the connected clients (paged, filtered by client id prefix) and one client's
 * detail with kick and ban. Owns: these two pages. Must not: show the change controls to
 * a viewer (the server refuses them anyway; hiding them keeps the page honest).
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { del, get, messageOf, post, withQuery } from '../api';
import { ErrorLine, Field, PageTitle, ScrollBox, Select, text, useCanChange, useLoad, when } from '../ui';

interface ClientView {
  clientId: string;
  node: string;
  principal: string | null;
  method: string;
  username?: string | null;
  remoteAddress: string;
  listener: string;
  connectedSince: string | number;
  protocolVersion: number;
  subscriptions: number;
  certificate: null | { commonName: string; serialNumber: string; organizationalUnits: string[]; fingerprint256: string };
  tls: null | { version: string; cipher: string; group: string | null; resumed: boolean };
}

interface ClientDetailView extends ClientView {
  subscriptionFilters?: Array<{ filter: string; qos: number }>;
  inflight?: number;
  queued?: number;
  quota?: null | { messagesPerSecond: number | null; bytesPerSecond: number | null };
}

interface ClientPage {
  total: number;
  offset: number;
  limit: number;
  clients: ClientView[];
}

const PAGE = 50;

export function Clients(): JSX.Element {
  const [prefix, setPrefix] = useState('');
  const [applied, setApplied] = useState('');
  const [offset, setOffset] = useState(0);
  const page = useLoad(() => get<ClientPage>(withQuery('/api/v1/clients', { offset, limit: PAGE, prefix: applied })), [offset, applied]);
  const d = page.data;
  const total = d?.total ?? 0;
  const shown = d?.clients.length ?? 0;

  return (
    <>
      <PageTitle>Clients</PageTitle>
      <form
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setOffset(0);
          setApplied(prefix.trim());
          if (prefix.trim() === applied) page.reload();
        }}
      >
        <Field id="client-prefix" label="Client id prefix" value={prefix} onInput={setPrefix} type="search" />
        <button type="submit">Search</button>
        <button type="button" class="secondary" onClick={() => page.reload()}>
          Refresh
        </button>
      </form>
      <ErrorLine error={page.error} />
      <ScrollBox label="Connected clients">
        <table aria-label="Connected clients">
          <thead>
            <tr>
              <th scope="col">Client id</th>
              <th scope="col">Principal</th>
              <th scope="col">Address</th>
              <th scope="col">TLS version</th>
              <th scope="col">Node</th>
              <th scope="col">Connected since</th>
            </tr>
          </thead>
          <tbody>
            {d?.clients.map((c) => (
              <tr key={c.clientId}>
                <td>
                  <a href={`#/clients/${encodeURIComponent(c.clientId)}`}>{c.clientId}</a>
                </td>
                <td>{text(c.principal)}</td>
                <td>{c.remoteAddress}</td>
                <td>{c.tls?.version ?? 'none'}</td>
                <td>{c.node}</td>
                <td>{when(c.connectedSince)}</td>
              </tr>
            ))}
            {d !== null && shown === 0 && (
              <tr>
                <td colSpan={6} class="muted">
                  {applied === '' ? 'No client is connected.' : `No connected client id starts with “${applied}”.`}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </ScrollBox>
      <div class="row pager">
        <button type="button" class="secondary" disabled={offset === 0 || page.loading} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Previous
        </button>
        <span data-testid="clients-range" aria-live="polite">
          {shown === 0 ? `0 of ${total}` : `${offset + 1}–${offset + shown} of ${total}`}
        </span>
        <button type="button" class="secondary" disabled={offset + shown >= total || page.loading} onClick={() => setOffset(offset + PAGE)}>
          Next
        </button>
      </div>
    </>
  );
}

const BAN_KINDS: Array<[string, string]> = [
  ['clientId', 'Client id'],
  ['username', 'Username'],
  ['certSerial', 'Certificate serial'],
  ['certFingerprint', 'Certificate fingerprint'],
  ['ip', 'IP address'],
  ['cidr', 'Address range (CIDR)'],
];

const DURATIONS: Array<[string, string]> = [
  ['3600', '1 hour'],
  ['86400', '1 day'],
  ['604800', '7 days'],
  ['2592000', '30 days'],
  ['0', 'Permanent'],
];

function banValue(c: ClientDetailView, kind: string): string {
  switch (kind) {
    case 'clientId':
      return c.clientId;
    case 'username':
      return c.username ?? '';
    case 'certSerial':
      return c.certificate?.serialNumber ?? '';
    case 'certFingerprint':
      return c.certificate?.fingerprint256 ?? '';
    case 'ip':
      return c.remoteAddress.replace(/^\[?([^\]]*?)\]?(:\d+)?$/, (_m, host: string) => host);
    default:
      return '';
  }
}

function BanForm({ client, onDone, onCancel }: { client: ClientDetailView; onDone: (msg: string) => void; onCancel: () => void }): JSX.Element {
  const [kind, setKind] = useState('clientId');
  const [value, setValue] = useState(client.clientId);
  const [reason, setReason] = useState('');
  const [ttl, setTtl] = useState('3600');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="inline-form"
      aria-label="Ban this client"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError('');
        try {
          const r = await post<{ ban: { id: number }; disconnected?: unknown[] }>('/api/v1/bans', { kind, value, reason, ...(ttl !== '0' ? { ttlSeconds: Number(ttl) } : {}) });
          onDone(`Banned ${kind} ${value} (ban ${r.ban.id}); ${r.disconnected?.length ?? 0} session(s) disconnected.`);
        } catch (err) {
          setError(`Ban failed: ${messageOf(err)}`);
        } finally {
          setBusy(false);
        }
      }}
    >
      <Select
        id="ban-kind"
        label="Ban by"
        value={kind}
        options={BAN_KINDS}
        onChange={(k) => {
          setKind(k);
          setValue(banValue(client, k));
        }}
      />
      <Field id="ban-value" label="Value" value={value} onInput={setValue} required />
      <Field id="ban-reason" label="Reason" value={reason} onInput={setReason} />
      <Select id="ban-duration" label="Duration" value={ttl} options={DURATIONS} onChange={setTtl} />
      <button type="submit" class="danger" disabled={busy}>
        Add ban
      </button>
      <button type="button" class="secondary" onClick={onCancel}>
        Cancel
      </button>
      <ErrorLine error={error} />
    </form>
  );
}

export function ClientDetail({ id }: { id: string }): JSX.Element {
  const canChange = useCanChange();
  const c = useLoad(() => get<ClientDetailView>(`/api/v1/clients/${encodeURIComponent(id)}`), [id]);
  const [banning, setBanning] = useState(false);
  const [error, setError] = useState('');
  const [done, setDone] = useState('');
  const d = c.data;

  const kick = async (): Promise<void> => {
    setError('');
    try {
      await del(`/api/v1/clients/${encodeURIComponent(id)}`);
      // Back to the list, which loads afresh (the kicked client is gone from it).
      location.hash = '#/clients';
    } catch (err) {
      setError(`Kick failed: ${messageOf(err)}`);
    }
  };

  return (
    <>
      <PageTitle>Client {id}</PageTitle>
      <p>
        <a href="#/clients">Back to clients</a>
      </p>
      <ErrorLine error={c.error} />
      <ErrorLine error={error} />
      {done !== '' && (
        <p role="status" class="notice">
          {done}
        </p>
      )}
      {d !== null && (
        <>
          {canChange && (
            <div class="row">
              <button type="button" class="danger" onClick={() => void kick()}>
                Kick
              </button>
              <button type="button" class="secondary" aria-expanded={banning} onClick={() => setBanning(!banning)}>
                Ban…
              </button>
            </div>
          )}
          {canChange && banning && (
            <BanForm
              client={d}
              onCancel={() => setBanning(false)}
              onDone={(msg) => {
                // No reload: a ban disconnects the client, and the page would only say it is gone.
                setBanning(false);
                setDone(msg);
              }}
            />
          )}
          <h2>Connection</h2>
          <dl class="kv" data-testid="client-detail">
            <dt>Principal</dt>
            <dd>{text(d.principal)}</dd>
            <dt>Method</dt>
            <dd>{text(d.method)}</dd>
            <dt>Username</dt>
            <dd>{text(d.username)}</dd>
            <dt>Address</dt>
            <dd>{d.remoteAddress}</dd>
            <dt>Listener</dt>
            <dd>{text(d.listener)}</dd>
            <dt>Node</dt>
            <dd>{d.node}</dd>
            <dt>Connected since</dt>
            <dd>{when(d.connectedSince)}</dd>
            <dt>MQTT version</dt>
            <dd>{text(d.protocolVersion)}</dd>
            <dt>TLS version</dt>
            <dd>{d.tls?.version ?? 'none'}</dd>
            <dt>TLS group</dt>
            <dd>{text(d.tls?.group)}</dd>
            <dt>TLS cipher</dt>
            <dd>{text(d.tls?.cipher)}</dd>
            <dt>Quota</dt>
            <dd>
              {d.quota == null
                ? 'default limits'
                : `${d.quota.messagesPerSecond ?? 'default'} messages/s, ${d.quota.bytesPerSecond ?? 'default'} bytes/s`}
            </dd>
            <dt>In flight / queued</dt>
            <dd>
              {text(d.inflight)} / {text(d.queued)}
            </dd>
          </dl>
          <h2>Certificate</h2>
          {d.certificate === null ? (
            <p class="muted">No client certificate.</p>
          ) : (
            <dl class="kv">
              <dt>Common name</dt>
              <dd>{d.certificate.commonName}</dd>
              <dt>Serial</dt>
              <dd class="mono">{d.certificate.serialNumber}</dd>
              <dt>Organizational units</dt>
              <dd>{text(d.certificate.organizationalUnits)}</dd>
              <dt>SHA-256 fingerprint</dt>
              <dd class="mono">{d.certificate.fingerprint256}</dd>
            </dl>
          )}
          <h2>Subscriptions</h2>
          {(d.subscriptionFilters ?? []).length === 0 ? (
            <p class="muted">No subscriptions.</p>
          ) : (
            <ScrollBox label="Subscriptions">
              <table aria-label="Subscriptions">
                <thead>
                  <tr>
                    <th scope="col">Topic filter</th>
                    <th scope="col">QoS</th>
                  </tr>
                </thead>
                <tbody>
                  {d.subscriptionFilters!.map((s) => (
                    <tr key={s.filter}>
                      <td class="mono">{s.filter}</td>
                      <td>{s.qos}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </ScrollBox>
          )}
        </>
      )}
    </>
  );
}
