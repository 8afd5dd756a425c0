import { useEffect } from "react";
import { useDispatch, useSelector } from "react-redux";
import { hashFor } from "../features/nav.js";
import { fetchRecent, filterChanged, RECENT_LIMIT } from "../features/recent.js";
import { STATUSES } from "../features/status.js";
import { Banner, StatusBadge, Time } from "./common.jsx";

export default function RecentPage() {
  const dispatch = useDispatch();
  const { filter, items, loading, loaded, error } = useSelector((state) => state.recent);

  useEffect(() => {
    dispatch(fetchRecent(filter));
  }, [dispatch, filter]);

  return (
    <>
      <h1 tabIndex={-1}>Recent emails</h1>
      <div className="toolbar">
        <div className="field inline">
          <label htmlFor="status-filter">Status</label>
          <select
            id="status-filter"
            value={filter}
            onChange={(event) => dispatch(filterChanged(event.target.value))}
          >
            <option value="">All</option>
            {STATUSES.map((status) => (
              <option key={status} value={status}>
                {status}
              </option>
            ))}
          </select>
        </div>
        <button type="button" onClick={() => dispatch(fetchRecent(filter))} disabled={loading}>
          {loading ? "Refreshing…" : "Refresh"}
        </button>
      </div>
      {error && <Banner>{error}</Banner>}
      {!loaded && loading && <p role="status">Loading…</p>}
      {loaded && items.length === 0 && (
        <p role="status">{filter ? `No ${filter} emails.` : "No emails yet."}</p>
      )}
      {items.length > 0 && (
        <>
          <p className="muted small">
            The {RECENT_LIMIT} most recent{filter ? ` ${filter}` : ""} emails, newest first.
          </p>
          <ul className="recent" aria-label="Recent emails">
            {items.map((email) => (
              <li key={email.messageId} className="card recent-item" data-testid="recent-row">
                <div className="recent-main">
                  <a href={hashFor("email", email.messageId)}>{email.subject || "(no subject)"}</a>
                  <span className="muted small">
                    To {email.toName ? `${email.toName} <${email.toEmail}>` : email.toEmail}
                  </span>
                </div>
                <div className="recent-meta">
                  <StatusBadge status={email.status} testId="recent-status" />
                  <span className="muted small">
                    <Time value={email.acceptedAt} />
                  </span>
                </div>
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );
}
