/**
 * Provisioning: the templates devices provision by, the claim certificates and one-time
 * tokens handed out, and the devices provisioned so far. Owns: this page. Must not: change
 * anything (the CLI issues and revokes claims and tokens), or show a broken page when
 * provisioning is off (501): the server's message stands in for the tables.
 *
 * SECURITY: the API never sends a token's secret or hash; this page shows only ids.
 */
import type { ComponentChildren, JSX } from 'preact';
import { get } from '../api';
import { ErrorLine, PageTitle, ScrollBox, text, useLoad, when } from '../ui';

interface Template {
  name: string;
  commonName: string;
  organizationalUnit?: string;
  sans?: string[];
  days?: number;
  roles?: string[];
  parameters?: Record<string, { pattern?: string; required?: boolean }>;
  allowSerials?: string[];
  hook?: { url?: string };
}

interface Claim {
  serialNumber: string;
  template: string;
  status: string;
  devices: number;
  maxDevices: number;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
}

interface Token {
  id: string;
  template: string;
  status: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
  usedBy: string | null;
  revokedAt: string | null;
}

interface Device {
  identity: string;
  template: string;
  certSerial: string;
  notAfter: string;
  via: { claim?: string; token?: string };
  createdAt: string;
}

interface Provisioning {
  templates: Template[];
  claims: Claim[];
  tokens: Token[];
  devices: Device[];
}

/** Status words that need the operator's eye are coloured (never colour alone: the word stays). */
function statusClass(status: string): string {
  if (status === 'active' || status === 'unused') return 'ok';
  if (status === 'revoked') return 'bad';
  if (status === 'expired' || status === 'exhausted') return 'warn';
  return '';
}

/** One section: a heading with the count, then a table named `label` (or an empty row). */
function Section({ id, label, count, cols, empty, children }: { id: string; label: string; count: number; cols: string[]; empty: string; children: ComponentChildren }): JSX.Element {
  return (
    <section aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>
        {label} ({count})
      </h2>
      <ScrollBox label={label}>
        <table aria-label={label}>
          <thead>
            <tr>
              {cols.map((c) => (
                <th scope="col" key={c}>
                  {c}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {children}
            {count === 0 && (
              <tr>
                <td colSpan={cols.length} class="muted">
                  {empty}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </ScrollBox>
    </section>
  );
}

function parametersOf(t: Template): string {
  const entries = Object.entries(t.parameters ?? {});
  if (entries.length === 0) return '—';
  return entries.map(([name, p]) => `${name}${p.required === false ? ' (optional)' : ''}${p.pattern !== undefined ? ` ~ ${p.pattern}` : ''}`).join('; ');
}

function viaOf(d: Device): string {
  if (d.via.claim !== undefined) return `claim ${d.via.claim}`;
  if (d.via.token !== undefined) return `token ${d.via.token}`;
  return '—';
}

function Tables({ p }: { p: Provisioning }): JSX.Element {
  return (
    <>
      <Section id="templates" label="Templates" count={p.templates.length} cols={['Name', 'Common name', 'Organizational unit', 'SANs', 'Days', 'Roles', 'Parameters', 'Allowed serials', 'Hook']} empty="No templates.">
        {p.templates.map((t) => (
          <tr key={t.name}>
            <td>{t.name}</td>
            <td class="mono">{t.commonName}</td>
            <td>{text(t.organizationalUnit)}</td>
            <td class="mono">{text(t.sans)}</td>
            <td>{text(t.days)}</td>
            <td>{text(t.roles)}</td>
            <td class="wrap mono">{parametersOf(t)}</td>
            <td>{t.allowSerials === undefined ? 'any' : `${t.allowSerials.length} listed`}</td>
            <td>{text(t.hook?.url)}</td>
          </tr>
        ))}
      </Section>
      <Section id="claims" label="Claim certificates" count={p.claims.length} cols={['Serial number', 'Template', 'Status', 'Devices', 'Created', 'Expires', 'Revoked']} empty="No claim certificates.">
        {p.claims.map((c) => (
          <tr key={c.serialNumber}>
            <td class="mono">{c.serialNumber}</td>
            <td>{c.template}</td>
            <td class={statusClass(c.status)}>{c.status}</td>
            <td>
              {c.devices} of {c.maxDevices === 0 ? 'unlimited' : c.maxDevices}
            </td>
            <td>{when(c.createdAt)}</td>
            <td>{when(c.expiresAt)}</td>
            <td>{when(c.revokedAt)}</td>
          </tr>
        ))}
      </Section>
      <Section id="tokens" label="One-time tokens" count={p.tokens.length} cols={['Id', 'Template', 'Status', 'Created', 'Expires', 'Used', 'Used by', 'Revoked']} empty="No one-time tokens.">
        {p.tokens.map((t) => (
          <tr key={t.id}>
            <td class="mono">{t.id}</td>
            <td>{t.template}</td>
            <td class={statusClass(t.status)}>{t.status}</td>
            <td>{when(t.createdAt)}</td>
            <td>{when(t.expiresAt)}</td>
            <td>{when(t.usedAt)}</td>
            <td>{text(t.usedBy)}</td>
            <td>{when(t.revokedAt)}</td>
          </tr>
        ))}
      </Section>
      <Section id="devices" label="Provisioned devices" count={p.devices.length} cols={['Identity', 'Template', 'Certificate serial', 'Valid until', 'Provisioned by', 'Provisioned']} empty="No provisioned devices.">
        {p.devices.map((d) => (
          <tr key={d.identity}>
            <td>{d.identity}</td>
            <td>{d.template}</td>
            <td class="mono">{d.certSerial}</td>
            <td>{when(d.notAfter)}</td>
            <td class="mono">{viaOf(d)}</td>
            <td>{when(d.createdAt)}</td>
          </tr>
        ))}
      </Section>
    </>
  );
}

export function ProvisioningPage(): JSX.Element {
  const p = useLoad(() => get<Provisioning>('/api/v1/provisioning'), []);
  const off = p.error !== '' && p.status === 501;
  return (
    <>
      <PageTitle>Provisioning</PageTitle>
      {off && (
        <p role="status" class="notice" data-testid="provisioning-off">
          {p.error}
        </p>
      )}
      {!off && (
        <>
          <div class="row">
            <button type="button" class="secondary" onClick={() => p.reload()}>
              Refresh
            </button>
          </div>
          <ErrorLine error={p.error} />
          {p.data !== null && <Tables p={p.data} />}
        </>
      )}
    </>
  );
}
