import { useEffect, useRef } from "react";
import { useDispatch, useSelector } from "react-redux";
import { fieldChanged, selectSendErrors, sendEmail } from "../features/send.js";
import { hashFor } from "../features/nav.js";
import { Banner, Field } from "./common.jsx";
import DeliveryStatus from "./DeliveryStatus.jsx";

// The original service's fields. Hints only (noValidate): the server's answer is the authority.
const FORM = [
  { id: "fromName", label: "From name", autoComplete: "name" },
  { id: "fromEmail", label: "From email", type: "email", required: true, autoComplete: "email" },
  { id: "toName", label: "To name", autoComplete: "off" },
  { id: "toEmail", label: "To email", type: "email", required: true, autoComplete: "off" },
  { id: "subject", label: "Subject", className: "wide", autoComplete: "off" },
  { id: "body", label: "Body", multiline: true, required: true, rows: 8, className: "wide" },
];

export default function SendPage() {
  const dispatch = useDispatch();
  const { fields, sending, messageId } = useSelector((state) => state.send);
  const errors = useSelector(selectSendErrors);
  const formRef = useRef(null);
  const bannerRef = useRef(null);
  const successRef = useRef(null);
  const wasSending = useRef(false);

  // When an answer arrives, take focus to what it says: the first bad field, the banner, or
  // the message id.
  useEffect(() => {
    if (wasSending.current && !sending) {
      const invalid = formRef.current?.querySelector('[aria-invalid="true"]');
      (invalid || bannerRef.current || successRef.current)?.focus();
    }
    wasSending.current = sending;
  }, [sending]);

  function submit(event) {
    event.preventDefault();
    dispatch(sendEmail());
  }

  function bodyKeyDown(event) {
    // Enter submits from any one-line field; in the body it is a new line, so Ctrl+Enter sends.
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      formRef.current?.requestSubmit();
    }
  }

  return (
    <>
      <h1 tabIndex={-1}>Send an email</h1>
      {errors.banner && <Banner ref={bannerRef}>{errors.banner}</Banner>}
      {messageId && (
        <section className="card success" aria-labelledby="accepted-heading">
          <h2 id="accepted-heading" tabIndex={-1} ref={successRef}>
            Email accepted
          </h2>
          <p>
            Message id: <code data-testid="message-id">{messageId}</code>
          </p>
          <h3>Delivery status</h3>
          <DeliveryStatus messageId={messageId} />
          <p>
            <a href={hashFor("email", messageId)}>Open this email’s status page</a>
          </p>
        </section>
      )}
      <form
        ref={formRef}
        onSubmit={submit}
        noValidate
        aria-busy={sending}
        aria-label="Send an email"
        className="card send-form"
      >
        {/* Screen readers announce "required" from the inputs themselves. */}
        <p className="muted small wide" aria-hidden="true">
          Fields marked * are required.
        </p>
        {FORM.map(({ id, ...props }) => (
          <Field
            key={id}
            id={id}
            {...props}
            value={fields[id]}
            onChange={(event) => dispatch(fieldChanged({ name: id, value: event.target.value }))}
            onKeyDown={id === "body" ? bodyKeyDown : undefined}
            error={errors.fields[id]}
          />
        ))}
        <div className="actions wide">
          <button type="submit" className="primary" disabled={sending}>
            {sending ? "Sending…" : "Send"}
          </button>
          <span className="muted small">Ctrl+Enter in the body sends too.</span>
        </div>
      </form>
    </>
  );
}
