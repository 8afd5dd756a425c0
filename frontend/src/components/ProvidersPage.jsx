import { useEffect } from "react";
import { useDispatch, useSelector } from "react-redux";
import { fetchProviders, PROVIDERS_REFRESH_MS } from "../features/providers.js";
import { Banner, Time } from "./common.jsx";

/** Read-only health of each provider, refreshed every few seconds while shown. */
export default function ProvidersPage() {
  const dispatch = useDispatch();
  const { items, loaded, error, updatedAt } = useSelector((state) => state.providers);

  useEffect(() => {
    dispatch(fetchProviders());
    const timer = setInterval(() => dispatch(fetchProviders()), PROVIDERS_REFRESH_MS);
    return () => clearInterval(timer);
  }, [dispatch]);

  return (
    <>
      <h1 tabIndex={-1}>Providers</h1>
      <p className="muted small">
        Read-only; refreshed every {PROVIDERS_REFRESH_MS / 1000} seconds
        {updatedAt && (
          <>
            {" "}
            (last at <Time value={updatedAt} />)
          </>
        )}
        .
      </p>
      {error && <Banner>{error}</Banner>}
      {!loaded && !error && <p role="status">Loading…</p>}
      {loaded && items.length === 0 && <p>No providers are configured.</p>}
      <ul className="providers" aria-label="Providers">
        {items.map((provider) => (
          <ProviderRow key={provider.name} provider={provider} />
        ))}
      </ul>
    </>
  );
}

function ProviderRow({ provider }) {
  const health = provider.healthy ? "healthy" : "unhealthy";
  return (
    <li className={`card provider ${health}`} data-testid="provider-row" data-provider={provider.name}>
      <div className="provider-head">
        <h2>{provider.name}</h2>
        <span className={`health ${health}`} data-testid="provider-health" data-health={health}>
          {provider.healthy ? "Healthy" : "Unhealthy"}
        </span>
        {provider.probing && (
          // Unhealthy, not drained: it gets one probe message per pipeline run (the admin's
          // "probe each run"), not a probe that is running now.
          <span className="badge probe" title="Gets one probe message per pipeline run until it recovers">
            Probed each run
          </span>
        )}
        {provider.drained && <span className="badge drained">Drained</span>}
        {!provider.enabled && <span className="badge disabled">Disabled</span>}
      </div>
      <dl className="facts">
        <dt>Since</dt>
        <dd>
          <Time value={provider.since} />
        </dd>
        <dt>Consecutive failures</dt>
        <dd>{provider.consecutiveFailures}</dd>
        <dt>Consecutive passes</dt>
        <dd>{provider.consecutivePasses}</dd>
        <dt>In flight</dt>
        <dd>{provider.inFlight}</dd>
        <dt>Last error</dt>
        <dd>{provider.lastError || "—"}</dd>
      </dl>
    </li>
  );
}
