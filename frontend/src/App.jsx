import { useEffect, useRef } from "react";
import { useDispatch, useSelector } from "react-redux";
import { Banner } from "./components/common.jsx";
import EmailPage from "./components/EmailPage.jsx";
import ProvidersPage from "./components/ProvidersPage.jsx";
import RecentPage from "./components/RecentPage.jsx";
import SendPage from "./components/SendPage.jsx";
import SignIn from "./components/SignIn.jsx";
import { hashFor, navigated, parseHash } from "./features/nav.js";
import { loadSession, signOut } from "./features/session.js";

const LINKS = [
  { view: "send", label: "Send" },
  { view: "recent", label: "Recent emails" },
  { view: "providers", label: "Providers" },
];

export default function App() {
  const dispatch = useDispatch();
  const session = useSelector((state) => state.session);
  const nav = useSelector((state) => state.nav);

  useEffect(() => {
    dispatch(loadSession());
  }, [dispatch]);

  // Navigation is the URL's hash, so Back/Forward and bookmarks work with only "/" served.
  useEffect(() => {
    const sync = () => dispatch(navigated(parseHash(window.location.hash)));
    sync();
    window.addEventListener("hashchange", sync);
    return () => window.removeEventListener("hashchange", sync);
  }, [dispatch]);

  // Move focus to the new page's heading on navigation and after signing in.
  const previous = useRef({ ...nav, status: session.status });
  useEffect(() => {
    const before = previous.current;
    previous.current = { ...nav, status: session.status };
    const signedInNow = before.status === "signedOut" && session.status === "signedIn";
    const moved = before.view !== nav.view || before.messageId !== nav.messageId;
    if (session.status === "signedIn" && (signedInNow || moved)) {
      document.querySelector("main h1")?.focus();
    }
  }, [nav, session.status]);

  return (
    <>
      <a
        className="skip-link"
        href={hashFor(nav.view, nav.messageId)}
        onClick={(event) => {
          event.preventDefault();
          document.getElementById("main")?.focus();
        }}
      >
        Skip to content
      </a>
      <header className="topbar">
        <div className="topbar-inner">
          <span className="brand">Gomail</span>
          {session.user && (
            <>
              <nav aria-label="Main">
                <ul>
                  {LINKS.map(({ view, label }) => (
                    <li key={view}>
                      <a href={hashFor(view)} aria-current={nav.view === view ? "page" : undefined}>
                        {label}
                      </a>
                    </li>
                  ))}
                  {session.user.isStaff && (
                    <li>
                      <a href="/admin/">Admin</a>
                    </li>
                  )}
                </ul>
              </nav>
              <div className="user">
                <span className="muted-on-dark">{session.user.username}</span>
                <button type="button" className="on-dark" onClick={() => dispatch(signOut())}>
                  Sign out
                </button>
              </div>
            </>
          )}
        </div>
      </header>
      {session.status === "checking" ? (
        <main id="main" className="page" tabIndex={-1}>
          <p role="status">Loading…</p>
        </main>
      ) : session.user ? (
        <main id="main" className="page" tabIndex={-1}>
          {session.signOutError && <Banner>{session.signOutError}</Banner>}
          <Page view={nav.view} messageId={nav.messageId} />
        </main>
      ) : (
        <SignIn />
      )}
    </>
  );
}

function Page({ view, messageId }) {
  switch (view) {
    case "recent":
      return <RecentPage />;
    case "providers":
      return <ProvidersPage />;
    case "email":
      return <EmailPage key={messageId} messageId={messageId} />;
    default:
      return <SendPage />;
  }
}
