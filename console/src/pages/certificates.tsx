/**
 * Certificates: the issued certificates (filters, table), when the valid ones expire (the
 * next 90 days, per week), issuing one (the bundle offered as a download) and revoking one.
 * Owns: this page. Must not: keep the private key anywhere but the one Blob behind the
 * download link.
 *
 * SECURITY: the issued key reaches the page once; it is put in a Blob URL for the
 * download, never rendered, and the URL is revoked when the page is left or a new one issued.
 */
import { Fragment, type JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { get, messageOf, post, withQuery } from '../api';
import { ErrorLine, Field, PageTitle, ScrollBox, Select, useCanChange, useLoad, when } from '../ui';

interface Cert {
  serialNumber: string;
  kind: string;
  commonName: string;
  subject?: string;
  sans?: string[];
  notBefore?: string;
  notAfter: string;
  issuedAt?: string;
  status: 'valid' | 'revoked';
  revokedAt: string | null;
  reason: string | null;
}

interface Issued {
  serialNumber: string;
  commonName: string;
  notAfter: string;
  certPem: string;
  keyPem: string;
  caPem: string;
}

const REASONS: Array<[string, string]> = [
  ['unspecified', 'Unspecified'],
  ['keyCompromise', 'Key compromise'],
  ['affiliationChanged', 'Affiliation changed'],
  ['superseded', 'Superseded'],
  ['cessationOfOperation', 'Cessation of operation'],
  ['privilegeWithdrawn', 'Privilege withdrawn'],
];

const DAY = 86400000;
const WEEK = 7 * DAY;

/** Valid certificates expiring in the next 90 days, counted per week (13 weeks). */
function Timeline(): JSX.Element {
  const soon = useLoad(() => get<{ total: number; certificates: Cert[] }>('/api/v1/certificates?status=valid&expiringWithinDays=90&limit=1000'), []);
  const start = Date.now();
  const weeks = Array.from({ length: 13 }, (_, i) => ({ from: start + i * WEEK, count: 0 }));
  for (const c of soon.data?.certificates ?? []) {
    const t = Date.parse(c.notAfter);
    if (c.status !== 'valid' || Number.isNaN(t) || t < start) continue;
    const w = weeks[Math.floor((t - start) / WEEK)];
    if (w !== undefined) w.count++;
  }
  const max = Math.max(1, ...weeks.map((w) => w.count));
  const total = weeks.reduce((n, w) => n + w.count, 0);
  return (
    <section aria-labelledby="expiry-h">
      <h2 id="expiry-h">Expiring in the next 90 days</h2>
      <ErrorLine error={soon.error} />
      <p data-testid="expiry-total">
        {total === 0 ? 'No valid certificate expires in the next 90 days.' : `${total} valid certificate${total === 1 ? ' expires' : 's expire'} in the next 90 days.`}
      </p>
      <ul class="timeline" aria-label="Expiring certificates per week">
        {weeks.map((w) => (
          <li key={w.from}>
            <span>{new Date(w.from).toLocaleDateString(undefined, { month: 'short', day: 'numeric' })}</span>
            <span class={w.count === 0 ? 'bar zero' : 'bar'} style={{ width: `${(w.count / max) * 100}%` }} aria-hidden="true" />
            <span>
              {w.count}
              <span class="sr"> expiring in the week from {new Date(w.from).toDateString()}</span>
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}

function IssueForm({ onIssued }: { onIssued: () => void }): JSX.Element {
  const [cn, setCn] = useState('');
  const [profile, setProfile] = useState('client');
  const [ou, setOu] = useState('');
  const [days, setDays] = useState('365');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [bundle, setBundle] = useState<{ url: string; name: string; serial: string; notAfter: string } | null>(null);
  const urlRef = useRef<string | null>(null);

  const forget = (): void => {
    if (urlRef.current !== null) URL.revokeObjectURL(urlRef.current);
    urlRef.current = null;
  };
  useEffect(() => forget, []);

  return (
    <section aria-labelledby="issue-h">
      <h2 id="issue-h">Issue certificate</h2>
      <form
        aria-label="Issue certificate"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError('');
          try {
            const r = await post<Issued>('/api/v1/certificates', {
              commonName: cn.trim(),
              profile,
              ...(ou.trim() !== '' ? { organizationalUnit: ou.trim() } : {}),
              days: Number(days),
            });
            forget();
            const url = URL.createObjectURL(new Blob([r.keyPem, r.certPem, r.caPem], { type: 'application/x-pem-file' }));
            urlRef.current = url;
            setBundle({ url, name: `${r.commonName}.pem`, serial: r.serialNumber, notAfter: r.notAfter });
            onIssued();
          } catch (err) {
            setError(`Issue failed: ${messageOf(err)}`);
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field id="issue-cn" label="Common name" value={cn} onInput={setCn} required />
        <Select
          id="issue-profile"
          label="Profile"
          value={profile}
          options={[
            ['client', 'client'],
            ['server', 'server'],
          ]}
          onChange={setProfile}
        />
        <Field id="issue-ou" label="Organizational unit" value={ou} onInput={setOu} />
        <Field id="issue-days" label="Days" type="number" min={1} value={days} onInput={setDays} required />
        <button type="submit" disabled={busy}>
          Issue
        </button>
      </form>
      <ErrorLine error={error} />
      {bundle !== null && (
        <p role="status" class="notice">
          Issued serial <span class="mono">{bundle.serial}</span>, valid until {when(bundle.notAfter)}.{' '}
          <a href={bundle.url} download={bundle.name}>
            Download bundle
          </a>{' '}
          (key, certificate and CA in one PEM file; the key is not shown again).
        </p>
      )}
    </section>
  );
}

function RevokeRow({ cert, onDone, onCancel }: { cert: Cert; onDone: (msg: string) => void; onCancel: () => void }): JSX.Element {
  const [reason, setReason] = useState('unspecified');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const id = `revoke-${cert.serialNumber}`;
  return (
    <tr class="subrow">
      <td colSpan={6}>
        <form
          aria-label={`Revoke ${cert.commonName}`}
          onSubmit={async (e) => {
            e.preventDefault();
            setBusy(true);
            setError('');
            try {
              await post<Cert>(`/api/v1/certificates/${encodeURIComponent(cert.serialNumber)}/revoke`, { reason });
              onDone(`Revoked ${cert.commonName} (serial ${cert.serialNumber}).`);
            } catch (err) {
              setError(`Revoke failed: ${messageOf(err)}`);
              setBusy(false);
            }
          }}
        >
          <Select id={`${id}-reason`} label="Reason" value={reason} options={REASONS} onChange={setReason} />
          <button type="submit" class="danger" disabled={busy}>
            Confirm revoke
          </button>
          <button type="button" class="secondary" onClick={onCancel}>
            Cancel
          </button>
        </form>
        <ErrorLine error={error} />
      </td>
    </tr>
  );
}

export function Certificates(): JSX.Element {
  const canChange = useCanChange();
  const [status, setStatus] = useState('');
  const [kind, setKind] = useState('');
  const [q, setQ] = useState('');
  const [applied, setApplied] = useState({ status: '', kind: '', q: '' });
  const [revoking, setRevoking] = useState<string | null>(null);
  const [done, setDone] = useState('');
  const list = useLoad(() => get<{ total: number; certificates: Cert[] }>(withQuery('/api/v1/certificates', { ...applied, limit: 200 })), [applied]);
  const [timelineKey, setTimelineKey] = useState(0);

  return (
    <>
      <PageTitle>Certificates</PageTitle>
      <form
        role="search"
        aria-label="Filter certificates"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({ status, kind, q: q.trim() });
        }}
      >
        <Select
          id="cert-status"
          label="Status"
          value={status}
          options={[
            ['', 'any'],
            ['valid', 'valid'],
            ['revoked', 'revoked'],
          ]}
          onChange={setStatus}
        />
        <Select
          id="cert-kind"
          label="Kind"
          value={kind}
          options={[
            ['', 'any'],
            ['client', 'client'],
            ['server', 'server'],
            ['intermediate', 'intermediate'],
            ['root', 'root'],
            ['claim', 'claim'],
          ]}
          onChange={setKind}
        />
        <Field id="cert-q" label="Common name contains" type="search" value={q} onInput={setQ} />
        <button type="submit">Filter</button>
        <button type="button" class="secondary" onClick={() => list.reload()}>
          Refresh
        </button>
      </form>
      <ErrorLine error={list.error} />
      {done !== '' && (
        <p role="status" class="notice">
          {done}
        </p>
      )}
      {list.data !== null && (
        <p class="muted" data-testid="cert-count">
          {list.data.certificates.length} of {list.data.total} shown
        </p>
      )}
      <ScrollBox label="Certificates">
        <table aria-label="Certificates">
          <thead>
            <tr>
              <th scope="col">Common name</th>
              <th scope="col">Kind</th>
              <th scope="col">Serial</th>
              <th scope="col">Not after</th>
              <th scope="col">Status</th>
              <th scope="col">{canChange ? 'Actions' : <span class="sr">No actions</span>}</th>
            </tr>
          </thead>
          <tbody>
            {list.data?.certificates.map((c) => (
              <Fragment key={c.serialNumber}>
                <tr>
                  <td>{c.commonName}</td>
                  <td>{c.kind}</td>
                  <td class="mono">{c.serialNumber}</td>
                  <td>{when(c.notAfter)}</td>
                  <td class={c.status === 'valid' ? 'ok' : 'bad'}>
                    {c.status}
                    {c.status === 'revoked' && c.reason !== null ? ` (${c.reason})` : ''}
                  </td>
                  <td>
                    {canChange && c.status === 'valid' && c.kind !== 'root' && (
                      <button type="button" class="secondary" aria-label={`Revoke ${c.commonName}`} aria-expanded={revoking === c.serialNumber} onClick={() => setRevoking(revoking === c.serialNumber ? null : c.serialNumber)}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
                {canChange && revoking === c.serialNumber && (
                  <RevokeRow
                    cert={c}
                    onCancel={() => setRevoking(null)}
                    onDone={(msg) => {
                      setRevoking(null);
                      setDone(msg);
                      list.reload();
                      setTimelineKey((k) => k + 1);
                    }}
                  />
                )}
              </Fragment>
            ))}
            {list.data !== null && list.data.certificates.length === 0 && (
              <tr>
                <td colSpan={6} class="muted">
                  No certificate matches.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </ScrollBox>
      <Timeline key={timelineKey} />
      {canChange && (
        <IssueForm
          onIssued={() => {
            list.reload();
            setTimelineKey((k) => k + 1);
          }}
        />
      )}
    </>
  );
}
