/**
 * The `cluster` section: how this broker joins a cluster through NATS JetStream (issue 12).
 * Owns: what a valid cluster setting is, its defaults, and the node id rules. Must not:
 * read files or open connections (src/cluster/nats-connection.ts does).
 *
 * SECURITY: nats-server has no authentication by default and listens on every interface,
 * so a NATS server that is not on this machine (loopback) must be reached with credentials
 * AND TLS; anything else is a config error naming the key. Secrets come from files only
 * (`passwordFile`, `tokenFile`, `credsFile`, `nkeySeedFile`), as `authn.jwt.secretFile`
 * does: a config file is copied, pasted into tickets and shown by tools, while a secret
 * file can be 0600 and rotated on its own. Inline `password`/`token` keys are refused with
 * the name of the file key to use instead, and so is a URL carrying `user:password@`.
 *
 * Without this section Bastion is a single broker exactly as before: no NATS at all.
 */
import { z } from 'zod';

/** A node id is one NATS subject token and one KV key part: letters, digits, `_` and `-`. */
export const NODE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Retention of the cluster's message stream: what an offline session can still receive. */
export const DEFAULT_RETENTION = {
  /** 7 days, the default `mqtt.sessionExpiryMax`: a session may not outlive its messages. */
  maxAgeSeconds: 604800,
  /** 1 GiB of stored messages (the oldest go first). */
  maxBytes: 1073741824,
} as const;

const credentialsSchema = z
  .object({
    user: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    /** A NATS `.creds` file (user JWT and nkey seed), as `nsc` writes it. */
    credsFile: z.string().min(1).optional(),
    /** A file holding an nkey seed (`SU…`). */
    nkeySeedFile: z.string().min(1).optional(),
    /** Refused below with the file key to use; declared so the error can say so. */
    password: z.unknown().optional(),
    token: z.unknown().optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    // SECURITY: secrets from files only (see the header).
    if (c.password !== undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: 'inline passwords are not accepted: put the password in a file (mode 0600) and name it in passwordFile' });
    if (c.token !== undefined) ctx.addIssue({ code: 'custom', path: ['token'], message: 'inline tokens are not accepted: put the token in a file (mode 0600) and name it in tokenFile' });
    const kinds = [c.user !== undefined || c.passwordFile !== undefined ? 'user/passwordFile' : undefined, c.tokenFile, c.credsFile, c.nkeySeedFile].filter((k) => k !== undefined);
    if (kinds.length !== 1 && c.password === undefined && c.token === undefined) {
      ctx.addIssue({ code: 'custom', path: [], message: 'exactly one of user with passwordFile, tokenFile, credsFile or nkeySeedFile is needed' });
    }
    if ((c.user === undefined) !== (c.passwordFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: [c.user === undefined ? 'user' : 'passwordFile'], message: 'user and passwordFile go together' });
    }
  });

const natsTlsSchema = z
  .object({
    /** Trust anchors for the NATS servers' certificates (absent: the system's CAs). */
    ca: z.string().min(1).optional(),
    /** A client certificate and key, for servers that verify clients. */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if ((t.cert === undefined) !== (t.key === undefined)) ctx.addIssue({ code: 'custom', path: [t.cert === undefined ? 'cert' : 'key'], message: 'cert and key go together' });
  });

/** What a server URL says, or why it is refused. */
export function parseNatsUrl(url: string): { scheme: 'nats' | 'tls'; host: string; port: number } | { error: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { error: `${url} is not a URL (write nats://host:port)` };
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (scheme !== 'nats' && scheme !== 'tls') return { error: `${url}: the scheme must be nats:// or tls://` };
  // SECURITY: a password in a URL is an inline secret, and it would be logged with the URL.
  if (u.username !== '' || u.password !== '') return { error: `${url}: credentials do not go in the URL; use cluster.nats.credentials` };
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '') return { error: `${url}: only nats://host:port (no path or query)` };
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') return { error: `${url} names no host` };
  const port = u.port === '' ? 4222 : Number(u.port);
  return { scheme, host, port };
}

/** 127.0.0.0/8, ::1 and localhost: a NATS server on this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return m !== null && m[1] === '127' && m.slice(2).every((o) => Number(o) <= 255);
}

export const clusterSchema = z
  .object({
    nats: z
      .object({
        /** nats://host:port or tls://host:port; the client reconnects among them. */
        servers: z.array(z.string().min(1)).min(1),
        credentials: credentialsSchema.optional(),
        /** Present (may be `{}`): TLS is required toward every server. */
        tls: natsTlsSchema.optional(),
        /** A first connection that takes longer fails the start (fail closed). */
        connectTimeoutSeconds: z.number().positive().max(120).default(5),
      })
      .strict()
      .superRefine((n, ctx) => {
        n.servers.forEach((url, i) => {
          const parsed = parseNatsUrl(url);
          if ('error' in parsed) {
            ctx.addIssue({ code: 'custom', path: ['servers', i], message: parsed.error });
            return;
          }
          if (parsed.scheme === 'tls' && n.tls === undefined) ctx.addIssue({ code: 'custom', path: ['tls'], message: `${url} asks for TLS: add cluster.nats.tls (may be {} to use the system's CAs)` });
          // SECURITY: no authentication and every interface are nats-server's defaults; off this machine, both are required.
          if (!isLoopbackHost(parsed.host)) {
            const missing = [n.credentials === undefined ? 'cluster.nats.credentials' : undefined, n.tls === undefined ? 'cluster.nats.tls' : undefined].filter((m) => m !== undefined);
            if (missing.length > 0) {
              ctx.addIssue({ code: 'custom', path: ['servers', i], message: `${url} is not loopback, so it needs ${missing.join(' and ')} (nats-server has no authentication by default and listens on every interface)` });
            }
          }
        });
      }),
    /**
     * This node's name in the cluster (NATS connection name, subjects, audit chain). Absent:
     * `<hostname>-<pid>` (see `defaultNodeId`), which changes at every restart; set it for
     * a stable identity.
     */
    nodeId: z.string().regex(NODE_ID_RE, 'must be 1 to 64 letters, digits, _ or - (one NATS subject token)').optional(),
    /**
     * How long a QoS 1/2 PUBLISH waits for the cluster's store (retried with one message id,
     * so it is kept once) before it is refused (v5: PUBACK 0x83; v3.1.1: disconnected). The
     * default rides out a JetStream leader election (6-8 s measured on 2.9.10).
     */
    storeTimeoutSeconds: z.number().positive().max(300).default(15),
    /** Copies of every stream and bucket: 1 (one NATS server) or 3 (a 3-node JetStream cluster, survives losing one). */
    replicas: z.union([z.literal(1), z.literal(3)]).default(1),
    /** The offline-queue policy: messages older or beyond the size are dropped, oldest first. */
    retention: z
      .object({
        maxAgeSeconds: z.number().int().min(60).default(DEFAULT_RETENTION.maxAgeSeconds),
        maxBytes: z.number().int().min(1048576).default(DEFAULT_RETENTION.maxBytes),
      })
      .strict()
      .default({ ...DEFAULT_RETENTION }),
  })
  .strict();

export type ClusterConfig = z.infer<typeof clusterSchema>;
export type NatsCredentialsConfig = NonNullable<ClusterConfig['nats']['credentials']>;

/**
 * The default node id from the machine's host name and the process id: the host name's
 * first label with anything outside the token alphabet replaced by `-`, cut so the whole
 * id stays within 64 characters.
 */
export function defaultNodeId(hostname: string, pid: number): string {
  const label = (hostname.split('.')[0] ?? '').replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 48);
  return `${label === '' ? 'node' : label}-${pid}`;
}

/** The configured node id, else the default one. */
export function resolveNodeId(cluster: Pick<ClusterConfig, 'nodeId'>, hostname: string, pid: number): string {
  return cluster.nodeId ?? defaultNodeId(hostname, pid);
}
