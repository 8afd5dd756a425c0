import { useEffect } from "react";
import { useDispatch, useSelector } from "react-redux";
import { followEmail, isFinal, stopFollowing } from "../features/status.js";
import { formatSize } from "../sizes.js";
import { Banner, STATUS_HINTS, StatusBadge, Time } from "./common.jsx";

export const addressOf = ({ email, name }) => (name ? `${name} <${email}>` : email);

const RECIPIENTS = [
  ["to", "To"],
  ["cc", "Cc"],
  ["bcc", "Bcc"],
];

/**
 * What the email was (recipients, tags, metadata, attachments), as far as the API's answer
 * says: an older API answers none of these, and a list that is empty is not shown.
 */
function EmailContents({ email }) {
  const metadata = Object.entries(email.metadata || {});
  return (
    <>
      {RECIPIENTS.map(
        ([kind, label]) =>
          email[kind]?.length > 0 && (
            <Fact key={kind} label={label}>
              <span data-testid={`email-${kind}`}>{email[kind].map(addressOf).join(", ")}</span>
            </Fact>
          ),
      )}
      {email.tags?.length > 0 && (
        <Fact label="Tags">
          <ul className="tags" data-testid="email-tags">
            {email.tags.map((tag) => (
              <li key={tag} className="tag">
                {tag}
              </li>
            ))}
          </ul>
        </Fact>
      )}
      {metadata.length > 0 && (
        <Fact label="Metadata">
          <ul className="plain" data-testid="email-metadata">
            {metadata.map(([key, value]) => (
              <li key={key}>
                <code>{key}</code>: {value}
              </li>
            ))}
          </ul>
        </Fact>
      )}
      {email.attachments?.length > 0 && (
        <Fact label="Attachments">
          <ul className="plain" data-testid="email-attachments">
            {email.attachments.map((attachment, index) => (
              <li key={index} data-testid="email-attachment">
                {attachment.filename}{" "}
                <span className="muted">
                  ({formatSize(attachment.size)}
                  {attachment.contentType ? `, ${attachment.contentType}` : ""})
                </span>
              </li>
            ))}
          </ul>
        </Fact>
      )}
    </>
  );
}

function Fact({ label, children }) {
  return (
    <>
      <dt>{label}</dt>
      <dd>{children}</dd>
    </>
  );
}

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
          <EmailContents email={email} />
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
