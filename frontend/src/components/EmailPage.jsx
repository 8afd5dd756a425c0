import { useSelector } from "react-redux";
import DeliveryStatus, { addressOf } from "./DeliveryStatus.jsx";

/** One email's status page (#/email/<id>), opened from the recent list or after sending. */
export default function EmailPage({ messageId }) {
  // What the recent list knows about it, if it was opened from there.
  const summary = useSelector((state) => state.recent.items.find((e) => e.messageId === messageId));
  // The status answer lists the recipients itself (DeliveryStatus), when the API has them.
  const listsRecipients = useSelector((state) => state.status.byId[messageId]?.email?.to?.length > 0);
  return (
    <>
      <h1 tabIndex={-1}>Delivery status</h1>
      <section className="card" aria-label="Email">
        <dl className="facts">
          <dt>Message id</dt>
          <dd>
            <code data-testid="message-id">{messageId}</code>
          </dd>
          {summary && (
            <>
              {!listsRecipients && (
                <>
                  <dt>To</dt>
                  <dd>{addressOf({ email: summary.toEmail, name: summary.toName })}</dd>
                </>
              )}
              <dt>Subject</dt>
              <dd>{summary.subject || "(no subject)"}</dd>
            </>
          )}
        </dl>
        <DeliveryStatus messageId={messageId} />
      </section>
      <p>
        <a href="#/recent">Back to recent emails</a>
      </p>
    </>
  );
}
