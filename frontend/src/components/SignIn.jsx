import { useEffect, useRef, useState } from "react";
import { useDispatch, useSelector } from "react-redux";
import { signIn } from "../features/session.js";
import { Banner, Field } from "./common.jsx";

export default function SignIn() {
  const dispatch = useDispatch();
  const { pending, errors } = useSelector((state) => state.session);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState(""); // kept out of the store on purpose
  const formRef = useRef(null);
  const bannerRef = useRef(null);
  const wasPending = useRef(false);

  useEffect(() => {
    if (wasPending.current && !pending) {
      const invalid = formRef.current?.querySelector('[aria-invalid="true"]');
      (invalid || bannerRef.current)?.focus();
    }
    wasPending.current = pending;
  }, [pending]);

  function submit(event) {
    event.preventDefault();
    dispatch(signIn({ username, password }));
  }

  return (
    <main id="main" className="page narrow" tabIndex={-1}>
      <h1>Sign in</h1>
      <p className="muted">Use your Gomail (Django) account.</p>
      {errors.base && <Banner ref={bannerRef}>{errors.base}</Banner>}
      <form ref={formRef} onSubmit={submit} noValidate aria-busy={pending} className="card">
        <Field
          id="username"
          label="Username"
          required
          autoComplete="username"
          autoCapitalize="none"
          spellCheck="false"
          autoFocus
          value={username}
          onChange={(event) => setUsername(event.target.value)}
          error={errors.username}
        />
        <Field
          id="password"
          label="Password"
          type="password"
          required
          autoComplete="current-password"
          value={password}
          onChange={(event) => setPassword(event.target.value)}
          error={errors.password}
        />
        <button type="submit" className="primary" disabled={pending}>
          {pending ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
