/** The one rule for BASTION_ROOT_KEY_PASSPHRASE (CLI, zero-config start, broker): empty is unset. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PASSPHRASE_ENV, rootKeyPassphraseFromEnv } from '../../src/server/pki-passphrase.js';

describe('rootKeyPassphraseFromEnv', () => {
  it('returns the value when set, undefined when unset or empty', () => {
    assert.equal(rootKeyPassphraseFromEnv({ [PASSPHRASE_ENV]: 'correct horse' }), 'correct horse');
    assert.equal(rootKeyPassphraseFromEnv({}), undefined);
    assert.equal(rootKeyPassphraseFromEnv({ [PASSPHRASE_ENV]: '' }), undefined);
  });
});
