/**
 * The console's entry: asks for the session, shows the login page or the app, and routes
 * by the URL hash (#/overview, #/clients, #/clients/<id>, ...). Owns: the layout (header,
 * nav, main) and the routing. Must not: hold page logic (pages/ does).
 */
import 'uplot/dist/uPlot.min.css';
import './styles.css';
import type { JSX } from 'preact';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, messageOf, onUnauthorized, setSession, type Session } from './api';
import { ErrorLine, SessionContext } from './ui';
import { Login } from './pages/login';
import { Overview } from './pages/overview';
import { ClientDetail, Clients } from './pages/clients';
import { Certificates } from './pages/certificates';
import { Access } from './pages/access';
import { Audit } from './pages/audit';
import { Alerts } from './pages/alerts';
import { ProvisioningPage } from './pages/provisioning';
import { Updates } from './pages/updates';

const PAGES: Array<[string, string]> = [
  ['overview', 'Overview'],
  ['clients', 'Clients'],
  ['certificates', 'Certificates'],
  ['access', 'Access'],
  ['audit', 'Audit'],
  ['alerts', 'Alerts'],
  ['provisioning', 'Provisioning'],
  ['updates', 'Updates'],
];

function currentRoute(): string[] {
  const h = location.hash.replace(/^#\/?/, '');
  const parts = h.split('/').map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return parts[0] === '' || parts[0] === undefined ? ['overview'] : parts;
}

function useRoute(): string[] {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const on = (): void => setRoute(currentRoute());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function Page({ route }: { route: string[] }): JSX.Element {
  const [name, arg] = route;
  switch (name) {
    case 'overview':
      return <Overview />;
    case 'clients':
      return arg !== undefined && arg !== '' ? <ClientDetail id={arg} /> : <Clients />;
    case 'certificates':
      return <Certificates />;
    case 'access':
      return <Access />;
    case 'audit':
      return <Audit />;
    case 'alerts':
      return <Alerts />;
    case 'provisioning':
      return <ProvisioningPage />;
    case 'updates':
      return <Updates />;
    default:
      return (
        <>
          <h1 id="page-title" tabIndex={-1}>
            Not found
          </h1>
          <p>
            There is no page “{name}”. <a href="#/overview">Go to the overview</a>.
          </p>
        </>
      );
  }
}

function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }): JSX.Element {
  const route = useRoute();
  const [error, setError] = useState('');
  const active = route[0] ?? 'overview';
  const first = useRef(true);
  useEffect(() => {
    const label = PAGES.find(([k]) => k === active)?.[1] ?? 'Not found';
    document.title = `${label} · Bastion`;
    // Move focus to the new page's heading so keyboard and screen-reader users land on it.
    // (Not on the first page shown: focus stays where the browser put it.)
    if (first.current) first.current = false;
    else document.getElementById('page-title')?.focus();
  }, [route.join('/')]);

  const signOut = async (): Promise<void> => {
    try {
      await api('DELETE', '/api/v1/session', { allow401: true });
      onSignOut();
    } catch (err) {
      setError(`Sign out failed: ${messageOf(err)}`);
    }
  };

  return (
    <SessionContext.Provider value={session}>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('page-title')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Bastion</span>
        <span class="who" data-testid="session-info">
          Signed in as <strong>{session.actor.name}</strong> ({session.actor.kind}), scope <strong>{session.scope}</strong>
        </span>
        <button type="button" class="secondary" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <nav aria-label="Main" class="nav">
        <ul>
          {PAGES.map(([k, label]) => (
            <li key={k}>
              <a href={`#/${k}`} aria-current={active === k ? 'page' : undefined}>
                {label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main">
        <ErrorLine error={error} />
        <Page key={route.join('/')} route={route} />
      </main>
    </SessionContext.Provider>
  );
}

function App(): JSX.Element {
  const [state, setState] = useState<{ phase: 'loading' | 'login' | 'app'; session: Session | null; notice: string }>({ phase: 'loading', session: null, notice: '' });

  const signedIn = (s: Session): void => {
    setSession(s);
    setState({ phase: 'app', session: s, notice: '' });
  };
  const signedOut = (notice: string): void => {
    setSession(null);
    setState({ phase: 'login', session: null, notice });
  };

  useEffect(() => {
    onUnauthorized((reason) => signedOut(reason));
    api<Session>('GET', '/api/v1/session', { allow401: true }).then(signedIn, (err: unknown) => {
      signedOut(err instanceof ApiError && err.status === 401 ? '' : `Could not reach the broker: ${messageOf(err)}`);
    });
  }, []);

  if (state.phase === 'loading')
    return (
      <main id="main" class="center">
        <p role="status">Loading…</p>
      </main>
    );
  if (state.phase === 'login' || state.session === null) return <Login notice={state.notice} onSignedIn={signedIn} />;
  return <Shell session={state.session} onSignOut={() => signedOut('You are signed out.')} />;
}

render(<App />, document.getElementById('app')!);
