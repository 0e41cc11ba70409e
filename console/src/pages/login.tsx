/**
 * The sign-in page: an admin token, or the operator certificate the browser presented.
 * Owns: the login form. Must not: store the token anywhere (it goes to the server once).
 *
 * SECURITY: the token field is a password input with autocomplete off; after the call the
 * field is cleared and only the session cookie (HttpOnly) and CSRF token remain.
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, ApiError, messageOf, type Session } from '../api';
import { ErrorLine } from '../ui';

export function Login({ notice, onSignedIn }: { notice: string; onSignedIn: (s: Session) => void }): JSX.Element {
  const [token, setToken] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const signIn = async (body: { token: string } | undefined): Promise<void> => {
    setBusy(true);
    setError('');
    try {
      const s = await api<Session>('POST', '/api/v1/session', { allow401: true, ...(body !== undefined ? { body } : {}) });
      setToken('');
      onSignedIn(s);
    } catch (err) {
      const why = messageOf(err);
      setError(err instanceof ApiError && err.status === 429 ? `Too many attempts: ${why}` : `Sign-in failed: ${why}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="login">
      <h1>Sign in</h1>
      <p class="muted">Bastion operator console</p>
      {notice !== '' && (
        <p role="status" class="notice">
          {notice}
        </p>
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void signIn({ token });
        }}
      >
        <div class="field">
          <label for="login-token">Admin token</label>
          <input id="login-token" type="password" autocomplete="off" spellcheck={false} required value={token} onInput={(e) => setToken((e.currentTarget as HTMLInputElement).value)} />
        </div>
        <div class="row">
          <button type="submit" disabled={busy}>
            Sign in
          </button>
        </div>
      </form>
      <p class="or">or</p>
      <button type="button" class="secondary" disabled={busy} onClick={() => void signIn(undefined)}>
        Sign in with certificate
      </button>
      <ErrorLine error={error} />
    </main>
  );
}
