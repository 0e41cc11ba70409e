/**
 * The client side of SCRAM-SHA-256 (RFC 5802/7677), written for the tests so they drive
 * Bastion's server side with an independent implementation. Must not: be imported by src/.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

export class ScramClient {
  readonly clientNonce: string;
  private clientFirstBare = '';
  private serverSignature: Buffer | null = null;

  constructor(
    private readonly username: string,
    private readonly password: string,
    clientNonce?: string,
  ) {
    this.clientNonce = clientNonce ?? randomBytes(18).toString('base64');
  }

  /** `n,,n=user,r=nonce`. */
  clientFirst(): string {
    const name = this.username.replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${name},r=${this.clientNonce}`;
    return `n,,${this.clientFirstBare}`;
  }

  /** Answers server-first (`r=..,s=..,i=..`) with client-final carrying the proof. */
  clientFinal(serverFirst: string): string {
    const attrs = new Map(serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
    const nonce = attrs.get('r') ?? '';
    if (!nonce.startsWith(this.clientNonce)) throw new Error('server nonce does not extend the client nonce');
    const salt = Buffer.from(attrs.get('s') ?? '', 'base64');
    const iterations = Number(attrs.get('i'));
    const salted = pbkdf2Sync(this.password, salt, iterations, 32, 'sha256');
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** True when server-final (`v=...`) proves the server knows our keys. */
  verifyServerFinal(serverFinal: string): boolean {
    if (this.serverSignature === null || !serverFinal.startsWith('v=')) return false;
    const v = Buffer.from(serverFinal.slice(2), 'base64');
    return v.length === this.serverSignature.length && timingSafeEqual(v, this.serverSignature);
  }
}
