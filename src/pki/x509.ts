/**
 * The one place that loads @peculiar/x509. Owns: `reflect-metadata` (the library's DI
 * container needs it) and wiring Node's WebCrypto in as the library's crypto provider.
 * Every pki module imports `x509` from here, never from the package, so this setup has
 * always run first. Must not: touch files or sockets.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

/** Node's WebCrypto `subtle`, the same provider @peculiar/x509 signs with. */
export const subtle: webcrypto.SubtleCrypto = webcrypto.subtle;

export { x509 };
