/**
 * The PKI duties of a running broker (config `pki`): re-sign the CRLs at start and hourly
 * when past half their lifetime (`manageCrl`), and serve OCSP (`ocsp`). Owns: the timer
 * and the logging of renewals and of what an operator must fix. Must not: decide CRL
 * contents (pki-crl.ts does).
 */
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { RunningOcspResponder } from '../admin/ocsp-responder.js';
import { configuredPkiDir } from './pki-layout.js';
import { rootKeyPassphraseFromEnv } from './pki-passphrase.js';
import type { PkiService as PkiServiceType } from './pki-service.js';

/** How often a broker checks whether the CRLs need re-signing. */
export const CRL_CHECK_INTERVAL_MS = 60 * 60 * 1000;

export interface PkiDuties {
  readonly ocsp: RunningOcspResponder | null;
  /** Runs one renewal check now (the timer calls the same). */
  renewNow(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts what `config.pki` asks for; returns null when it asks for nothing. */
export async function startPkiDuties(config: BastionConfig, baseDir: string, dataDir: string, logger: Logger): Promise<PkiDuties | null> {
  const { pki } = config;
  if (!pki.manageCrl && pki.ocsp === undefined) return null;
  const pkiDir = configuredPkiDir(pki.dir, baseDir, dataDir);
  const access = { passphrase: rootKeyPassphraseFromEnv() };
  // Loaded only when configured: a broker without a managed PKI never loads the X.509 code.
  const { PkiService } = await import('./pki-service.js');

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | null = null;
  const renewNow = (): Promise<void> => {
    running ??= (async () => {
      let service: PkiServiceType | undefined;
      try {
        service = await PkiService.open(pkiDir, access);
        const result = await service.renewCrlIfDue(new Date());
        if (result.renewed) logger.info({ crl: service.layout.crl }, 'CRL re-signed');
        for (const problem of result.problems) logger.error({ pkiDir }, problem);
      } catch (err) {
        logger.error({ pkiDir, err: (err as Error).message }, 'cannot re-sign the CRL');
      } finally {
        service?.close();
        running = null;
      }
    })();
    return running;
  };

  if (pki.manageCrl) {
    // Fail at start, not an hour later, when there is no PKI to manage.
    (await PkiService.open(pkiDir, access)).close();
    await renewNow();
    timer = setInterval(() => void renewNow(), CRL_CHECK_INTERVAL_MS);
    timer.unref();
  }

  let ocsp: RunningOcspResponder | null = null;
  if (pki.ocsp !== undefined) {
    const { startPkiOcspResponder } = await import('./pki-ocsp.js');
    try {
      ocsp = await startPkiOcspResponder({ host: pki.ocsp.host, port: pki.ocsp.port, pkiDir, logger, access });
    } catch (err) {
      if (timer !== undefined) clearInterval(timer);
      throw err;
    }
  }

  return {
    ocsp,
    renewNow,
    async stop() {
      if (timer !== undefined) clearInterval(timer);
      await running;
      await ocsp?.close();
    },
  };
}
