/**
 * The TLS context manager: one per TLS listener (mqtts and wss). Owns: the server options
 * (versions, suites, curves, CA, CRL, PSK, session tickets), admitting or refusing a
 * handshaken client with a log line naming OpenSSL's reason, hot reload of the files
 * without dropping connections, ticket keys and OCSP stapling. Must not: speak MQTT.
 *
 * SECURITY: with `clientCerts: required` OpenSSL refuses a client without a certificate
 * in the handshake (alert "certificate required") and Node destroys one whose certificate
 * failed verification; `attach` logs both with OpenSSL's reason. With `optional`, a
 * certificate that was presented but failed verification is refused here, not ignored.
 */
import { createHash } from 'node:crypto';
import { constants as cryptoConstants } from 'node:crypto';
import type net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import type { TlsPeer } from '../broker/channel/connection-port.js';
import { BastionError, ConfigError } from '../core/errors.js';
import type { ListenerConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import { effectiveGroups, isHybridGroup, offeredGroups, PSK_TLS12_CIPHERS, STRONG_TLS12_CIPHERS, TLS13_CIPHERS, type TlsConfig } from '../core/tls-config.js';
import { PskSessionIdentities } from './tls-psk-sessions.js';
import { revocationSourceOf, type RevocationSource } from './tls-revocation.js';
import { negotiatedGroup } from './tls-session.js';
import { verifiedPeer, verifyFailureReason, type IdentityPolicy } from './tls-identity.js';
import { changedFiles, loadTlsMaterial, withMissingFileHint, type TlsMaterial, type TlsPaths } from './tls-material.js';
import { OcspStapler } from './tls-ocsp.js';
import { TicketKeyStore } from './tls-tickets.js';
import { FileChangeWatcher } from './tls-watch.js';

/** What a TLS server needs of its config: an MQTT listener, or the admin API. */
export interface TlsEndpoint {
  name: string;
  tls?: TlsConfig | undefined;
  identity: ListenerConfig['identity'];
  clientIdMustMatch: boolean;
  psk?: { file: string } | undefined;
}

export interface TlsContextManagerOptions {
  listener: TlsEndpoint;
  resolvePath: (p: string) => string;
  /** Where the session ticket key file lives by default (`<dataDir>/tls-ticket-keys`). */
  dataDir: string;
  /** The built-in PKI's directory: a CA from it brings its CRLs (tls-revocation.ts). */
  pkiDir: string;
  logger: Logger;
  /** Where each finished or failed handshake is reported (tls.handshake events). */
  events?: SecurityEvents;
  /**
   * With `clientCerts: optional`, what happens to a presented certificate that failed
   * verification: `refuse` (default, MQTT listeners) closes the connection; `defer` (the
   * admin API) logs it and lets the application answer (401 with the reason).
   */
  unverifiedCertificates?: 'refuse' | 'defer';
}

export type ReloadResult = { ok: true; changed: string[] } | { ok: false; error: string };

/** Node's session id context is at most 32 bytes; derived from the listener name so that several processes agree. */
function sessionIdContextFor(listener: string): string {
  return createHash('sha256').update(`bastion-listener:${listener}`).digest('hex').slice(0, 32);
}

/**
 * With PSK, the PSK suites come first: OpenSSL clients offer them only when they hold a
 * key, so a client that offers them wants PSK, and with our preference order it would
 * otherwise get a certificate suite and fail for lack of a client certificate. TLS 1.3
 * external PSKs (through Node's pskCallback) are SHA-256 bound, so TLS_AES_128_GCM_SHA256
 * leads; with another suite first OpenSSL ignores the PSK and asks for a certificate.
 */
function defaultCiphers(psk: boolean): string {
  if (!psk) return STRONG_TLS12_CIPHERS.join(':');
  return ['TLS_AES_128_GCM_SHA256', ...TLS13_CIPHERS.filter((c) => c !== 'TLS_AES_128_GCM_SHA256'), ...PSK_TLS12_CIPHERS, ...STRONG_TLS12_CIPHERS].join(':');
}

/** One line at start on where this endpoint's client-certificate revocations come from. */
function announceRevocation(name: string, source: RevocationSource, logger: Logger): void {
  if (source.kind === 'crl' && source.builtIn) logger.info({ listener: name, crl: source.path }, 'revocations enforced from the built-in PKI (tls.ca is its CA)');
  if (source.kind === 'none' && source.why === 'no-source') {
    logger.warn(
      { listener: name },
      'client certificates are accepted but nothing can revoke them: set tls.crl (or trust the built-in PKI, whose CRLs apply by themselves), or write tls.revocation: none',
    );
  }
  if (source.kind === 'none' && source.why === 'opted-out') logger.warn({ listener: name }, 'tls.revocation: none: revoked client certificates are accepted');
}

/** Why a requirePostQuantum listener refused a handshake (also the metric's `post_quantum_required`). */
const POST_QUANTUM_REFUSAL = 'no post-quantum key exchange: the client offered no hybrid group and tls.requirePostQuantum is on';

/** The peer address of a TLS socket, also after Node destroyed it (through the Node-internal `_parent`, the raw socket; see attach). */
function remoteOf(socket: tls.TLSSocket): string {
  const raw = (socket as tls.TLSSocket & { _parent?: net.Socket | null })._parent;
  return socket.remoteAddress ?? raw?.remoteAddress ?? 'unknown';
}

export class TlsContextManager {
  private readonly servers = new Set<tls.Server>();
  private readonly crlListeners: Array<(crlPem: string) => void> = [];
  private readonly reloadListeners: Array<(r: ReloadResult) => void> = [];
  /** PSK identities our callback accepted, per socket (the handshake then proved the key). */
  private readonly pskIdentities = new WeakMap<tls.TLSSocket, string>();
  /** PSK identities of issued session tickets, so a resumed PSK client keeps its identity (PSK listeners only). */
  private readonly pskSessions: PskSessionIdentities | null;
  private readonly policy: IdentityPolicy;
  private watcher: FileChangeWatcher | null = null;
  private reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, changed: [] });
  private closed = false;
  /** The last refused reload's error, so a file that stays broken is logged once, not on every poll. */
  private lastReloadError: string | undefined;
  private readonly offTickets: () => void;

  private constructor(
    private readonly listener: TlsEndpoint,
    private readonly tlsConfig: TlsConfig,
    private readonly paths: TlsPaths,
    private material: TlsMaterial,
    private readonly tickets: TicketKeyStore | null,
    private readonly ocsp: OcspStapler | null,
    private readonly logger: Logger,
    private readonly events: SecurityEvents | null,
    /** Where this endpoint's revocations come from (decided at start). */
    readonly revocation: RevocationSource,
    private readonly deferUnverified: boolean,
  ) {
    this.policy = { mapping: listener.identity, clientIdMustMatch: listener.clientIdMustMatch };
    this.pskSessions = material.psk !== undefined ? new PskSessionIdentities() : null;
    this.offTickets =
      tickets?.onChange((key) => {
        for (const s of this.servers) s.setTicketKeys(key);
      }) ?? ((): void => {});
  }

  /** Loads and checks the listener's TLS files; throws ERR_TLS_MATERIAL / ERR_CONFIG naming the file. */
  static async create(opts: TlsContextManagerOptions): Promise<TlsContextManager> {
    const t = opts.listener.tls;
    if (t === undefined) throw new ConfigError(`listener ${opts.listener.name} has no tls section`);
    const ca = t.ca !== undefined ? opts.resolvePath(t.ca) : undefined;
    const revocation = await revocationSourceOf(t, ca, t.crl !== undefined ? opts.resolvePath(t.crl) : undefined, opts.pkiDir);
    const paths: TlsPaths = {
      cert: opts.resolvePath(t.cert),
      key: opts.resolvePath(t.key),
      ...(ca !== undefined ? { ca } : {}),
      ...(revocation.kind === 'crl' ? { crl: revocation.path } : {}),
      ...(opts.listener.psk !== undefined ? { psk: opts.resolvePath(opts.listener.psk.file) } : {}),
    };
    let material: TlsMaterial;
    try {
      material = await loadTlsMaterial(paths);
    } catch (err) {
      throw withMissingFileHint(err, paths, { baseDir: opts.resolvePath('.'), pkiDir: opts.pkiDir, dataDir: opts.dataDir });
    }
    // After the files proved usable: a start that fails on them says only why.
    announceRevocation(opts.listener.name, revocation, opts.logger);
    const st = t.sessionTickets;
    let tickets: TicketKeyStore | null = null;
    if (st.enabled) {
      const keyFile = st.keyFile !== undefined ? opts.resolvePath(st.keyFile) : join(opts.dataDir, 'tls-ticket-keys');
      try {
        tickets = TicketKeyStore.shared(keyFile, st.rotateHours, opts.logger);
      } catch (err) {
        throw new BastionError('ERR_TLS_MATERIAL', `cannot use the session ticket key file ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    if (t.curves !== undefined) {
      opts.logger.warn(
        { listener: opts.listener.name, curves: t.curves, postQuantum: offeredGroups(t).some(isHybridGroup) },
        'tls.curves is deprecated: rename it tls.groups (the default, X25519MLKEM768:X25519:P-256:P-384, adds hybrid post-quantum key exchange)',
      );
    }
    const ocsp = t.ocspStapling ? new OcspStapler(opts.listener.name, opts.logger) : null;
    const manager = new TlsContextManager(opts.listener, t, paths, material, tickets, ocsp, opts.logger, opts.events ?? null, revocation, opts.unverifiedCertificates === 'defer');
    ocsp?.update(material.cert, material.ca);
    return manager;
  }

  /** Options for tls.createServer / https.createServer (and setSecureContext on reload). */
  serverOptions(): tls.TlsOptions {
    const t = this.tlsConfig;
    const m = this.material;
    const psk = m.psk !== undefined;
    const options: tls.TlsOptions = {
      cert: m.cert,
      key: m.key,
      minVersion: t.minVersion,
      maxVersion: 'TLSv1.3',
      ciphers: t.ciphers ?? defaultCiphers(psk),
      ecdhCurve: effectiveGroups(t),
      honorCipherOrder: true,
      requestCert: t.clientCerts !== 'none',
      // With PSK, Node 24+ reports a PSK handshake (no certificate) as unverified and would
      // destroy it; admit() applies the same rule instead (a presented certificate must
      // verify; no certificate only with a PSK identity our callback accepted).
      rejectUnauthorized: t.clientCerts === 'required' && !psk,
      sessionIdContext: sessionIdContextFor(this.listener.name),
      // Nagle off from accept on, so the handshake's small records and the first MQTT
      // packets do not wait for the peer's ACK.
      noDelay: true,
    };
    if (m.ca !== undefined) options.ca = m.ca;
    if (m.crls !== undefined) options.crl = m.crls;
    if (this.tickets !== null) options.ticketKeys = this.tickets.key;
    else options.secureOptions = cryptoConstants.SSL_OP_NO_TICKET;
    if (psk) options.pskCallback = (socket, identity) => this.pskKey(socket, identity);
    return options;
  }

  /** Wires admission checks, handshake-failure logs, ticket keys, OCSP stapling and reload into `server`. */
  attach(server: tls.Server): void {
    this.servers.add(server);
    server.prependListener('secureConnection', (socket: tls.TLSSocket) => this.admit(socket));
    // No read of the raw socket's address here: the guarded acceptor (accepted-connections.ts)
    // reads it before this server sees the socket, which caches it for remoteOf.
    server.on('tlsClientError', (err: Error & { code?: string }, socket: tls.TLSSocket) => {
      // Node destroys a socket whose certificate failed verification and reports only
      // "socket hang up"; the verification code it stored says why.
      const reason = socket.authorizationError !== undefined && socket.authorizationError !== null ? verifyFailureReason(socket.authorizationError) : this.handshakeFailureReason(err);
      const remote = remoteOf(socket);
      this.logger.warn({ listener: this.listener.name, remote, code: err.code, reason }, 'TLS handshake failed');
      this.events?.emit({ type: 'tls.handshake', listener: this.listener.name, remoteAddress: remote, ok: false, resumed: false, reason: err.code !== undefined ? `${err.code}: ${reason}` : reason });
      // SECURITY: Node reports a handshake timeout here but leaves the socket open, so a
      // silent client would hold its slot forever; every failed handshake ends here.
      socket.destroy();
    });
    if (this.tickets !== null) server.setTicketKeys(this.tickets.key);
    const ocsp = this.ocsp;
    if (ocsp !== null) {
      server.on('OCSPRequest', (_cert: Buffer, _issuer: Buffer, cb: (err: Error | null, resp: Buffer | null) => void) => {
        cb(null, ocsp.current());
      });
    }
    this.watcher ??= new FileChangeWatcher(
      [...Object.values(this.paths), ...(this.tickets !== null ? [this.tickets.file] : [])],
      () => void this.reload(),
      { onWatchError: (dir, err) => this.logger.warn({ listener: this.listener.name, dir, err: err.message }, 'cannot watch TLS files; relying on the slow poll') },
    );
    if (this.material.crlPem !== undefined) for (const cb of this.crlListeners) cb(this.material.crlPem);
  }

  /** The verified certificate or PSK identity of a socket accepted by an attached server. */
  peerOf(socket: tls.TLSSocket): TlsPeer | null {
    return verifiedPeer(socket, this.policy, this.pskIdentities.get(socket));
  }

  /** `cb` gets the CRL text at attach time (if a CRL is configured) and after each reload that changed it. */
  onCrlLoaded(cb: (crlPem: string) => void): void {
    this.crlListeners.push(cb);
    if (this.servers.size > 0 && this.material.crlPem !== undefined) cb(this.material.crlPem);
  }

  /** `cb` gets the outcome of every reload that found a change or failed. */
  onReload(cb: (result: ReloadResult) => void): void {
    this.reloadListeners.push(cb);
  }

  /** Re-reads the files now (the watcher calls this); reloads run one at a time. */
  reload(): Promise<ReloadResult> {
    this.tickets?.refresh();
    this.reloading = this.reloading.then(() => this.reloadOnce());
    return this.reloading;
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.offTickets();
    this.tickets?.close();
    this.ocsp?.close();
  }

  private async reloadOnce(): Promise<ReloadResult> {
    if (this.closed) return { ok: true, changed: [] };
    let next: TlsMaterial;
    try {
      next = await loadTlsMaterial(this.paths);
    } catch (err) {
      const error = (err as Error).message;
      // SECURITY: a broken file never replaces a working context; the last good one stays.
      if (error !== this.lastReloadError) this.logger.error({ listener: this.listener.name, err: error }, 'TLS reload refused; keeping the current certificates');
      this.lastReloadError = error;
      return this.emitReload({ ok: false, error });
    }
    this.lastReloadError = undefined;
    const changed = changedFiles(this.material, next);
    if (changed.length === 0) return { ok: true, changed };
    const previous = this.material;
    this.material = next;
    try {
      const options = this.serverOptions();
      for (const s of this.servers) {
        s.setSecureContext(options);
        // setSecureContext builds a new context with fresh ticket keys: put ours back.
        if (this.tickets !== null) s.setTicketKeys(this.tickets.key);
      }
    } catch (err) {
      this.material = previous;
      this.logger.error({ listener: this.listener.name, err: (err as Error).message }, 'TLS reload failed; keeping the current certificates');
      return this.emitReload({ ok: false, error: (err as Error).message });
    }
    this.logger.info({ listener: this.listener.name, changed }, 'TLS material reloaded');
    if (changed.includes('cert') || changed.includes('ca')) this.ocsp?.update(next.cert, next.ca);
    if (changed.includes('crl') && next.crlPem !== undefined) for (const cb of this.crlListeners) cb(next.crlPem);
    return this.emitReload({ ok: true, changed });
  }

  private emitReload(r: ReloadResult): ReloadResult {
    for (const cb of this.reloadListeners) cb(r);
    return r;
  }

  private pskKey(socket: tls.TLSSocket, identity: string): Buffer | null {
    const key = this.material.psk?.get(identity);
    if (key === undefined) {
      this.logger.warn({ listener: this.listener.name, remote: socket.remoteAddress, pskIdentity: identity.slice(0, 128) }, 'unknown TLS-PSK identity');
      return null;
    }
    this.pskIdentities.set(socket, identity);
    return key;
  }

  /**
   * SECURITY: runs before the listener sees the socket. A certificate that failed
   * verification is refused even where certificates are optional (presenting a bad one is
   * not the same as presenting none), and every refusal is logged with OpenSSL's reason.
   */
  private admit(socket: tls.TLSSocket): void {
    // Read before a refusal destroys the socket (Node then answers null).
    const resumed = socket.isSessionReused();
    this.trackPskSession(socket, resumed);
    const reason = this.refusalOf(socket);
    // Per accepted connection: no event is built when nobody listens.
    const events = this.events;
    if (events === null || !events.active) return;
    events.emit({
      type: 'tls.handshake',
      listener: this.listener.name,
      remoteAddress: remoteOf(socket),
      ok: reason === null,
      resumed,
      ...(reason === null ? { group: negotiatedGroup(socket) } : {}),
      ...(reason !== null ? { reason } : {}),
    });
  }

  /**
   * A resumed session skips the PSK callback: recover its identity from the ticket. The
   * identity must still be in the PSK file (SECURITY: removing a device's key ends its
   * resumptions too, not only its full handshakes). A PSK-identified socket's own ticket
   * is remembered for its next resumption.
   */
  private trackPskSession(socket: tls.TLSSocket, resumed: boolean): void {
    const sessions = this.pskSessions;
    if (sessions === null) return;
    if (resumed && !this.pskIdentities.has(socket)) {
      const identity = sessions.recover(socket);
      if (identity !== undefined && this.material.psk?.has(identity) === true) this.pskIdentities.set(socket, identity);
      else if (identity !== undefined) this.logger.warn({ listener: this.listener.name, remote: remoteOf(socket), pskIdentity: identity.slice(0, 128) }, 'resumed TLS-PSK session of an identity no longer in the PSK file');
    }
    const identity = this.pskIdentities.get(socket);
    if (identity !== undefined) sessions.rememberTicket(socket, identity);
  }

  /**
   * OpenSSL's words for a failed handshake, except where the listener's own policy is the
   * cause: a client that offered no hybrid group to a requirePostQuantum listener.
   */
  private handshakeFailureReason(err: Error & { code?: string }): string {
    if (this.tlsConfig.requirePostQuantum && (err.code === 'ERR_SSL_NO_SUITABLE_KEY_SHARE' || err.code === 'ERR_SSL_NO_SHARED_GROUP')) {
      return `${POST_QUANTUM_REFUSAL} (${err.code})`;
    }
    return err.message;
  }

  /** Why a handshaken client is refused (logged, and the socket destroyed), or null. */
  private refusalOf(socket: tls.TLSSocket): string | null {
    if (this.tlsConfig.requirePostQuantum) {
      // SECURITY: the offered groups already exclude classic ones; this also catches a
      // handshake with no key exchange at all (TLS 1.3 psk_ke resumption).
      const group = negotiatedGroup(socket);
      if (!isHybridGroup(group)) {
        const reason = `${POST_QUANTUM_REFUSAL} (negotiated ${group})`;
        this.logger.warn({ listener: this.listener.name, remote: remoteOf(socket), reason }, 'TLS handshake failed');
        socket.destroy();
        return reason;
      }
    }
    const mode = this.tlsConfig.clientCerts;
    if (mode === 'none' || socket.authorized) return null;
    const cert = socket.getPeerCertificate();
    const presented = cert !== null && typeof cert === 'object' && cert.fingerprint256 !== undefined;
    if (!presented && this.pskIdentities.has(socket)) return null;
    if (!presented && mode === 'optional') return null;
    const reason = presented ? verifyFailureReason(socket.authorizationError) : 'no client certificate';
    if (presented && mode === 'optional' && this.deferUnverified) {
      // The application refuses it (the admin API answers 401 with the reason); logged here, once, like every refusal.
      this.logger.warn({ listener: this.listener.name, remote: remoteOf(socket), reason, subject: cert.subject?.CN, serialNumber: cert.serialNumber }, 'client certificate not trusted');
      return null;
    }
    this.logger.warn(
      { listener: this.listener.name, remote: remoteOf(socket), reason, ...(presented ? { subject: cert.subject?.CN, serialNumber: cert.serialNumber } : {}) },
      'TLS handshake failed',
    );
    socket.destroy();
    return reason;
  }
}
