import { useEffect } from "react";
import { useDispatch, useSelector } from "react-redux";
import { followEmail, isFinal, stopFollowing } from "../features/status.js";
import { Banner, STATUS_HINTS, StatusBadge, Time } from "./common.jsx";

/** An email's delivery status, polled live while it is shown and not final. */
export default function DeliveryStatus({ messageId }) {
  const dispatch = useDispatch();
  const entry = useSelector((state) => state.status.byId[messageId]);
  const following = useSelector((state) => Boolean(state.status.following[messageId]));

  useEffect(() => {
    dispatch(followEmail(messageId));
    return () => dispatch(stopFollowing(messageId));
  }, [dispatch, messageId]);

  const email = entry?.email;
  return (
    <div className="delivery" aria-busy={!email && !entry?.error}>
      {entry?.error && <Banner>{entry.error}</Banner>}
      {email ? (
        <dl className="facts">
          <dt>Status</dt>
          <dd aria-live="polite">
            <StatusBadge status={email.status} testId="email-status" />{" "}
            <span className="muted">{STATUS_HINTS[email.status]}</span>
          </dd>
          <dt>Provider</dt>
          <dd data-testid="email-provider">{email.provider || "—"}</dd>
          <dt>Attempts</dt>
          <dd data-testid="email-attempts">{email.attempts}</dd>
          <dt>Last error</dt>
          <dd data-testid="email-last-error">{email.lastError || "—"}</dd>
          <dt>Accepted</dt>
          <dd>
            <Time value={email.acceptedAt} />
          </dd>
          <dt>Sent</dt>
          <dd>
            <Time value={email.sentAt} />
          </dd>
        </dl>
      ) : (
        !entry?.error && <p role="status">Loading the status…</p>
      )}
      <p className="muted small" data-testid="polling-state">
        {following
          ? "Updating every second until the email is sent or dead."
          : isFinal(email)
            ? "Final status: no more updates."
            : "Not updating."}
      </p>
    </div>
  );
}
