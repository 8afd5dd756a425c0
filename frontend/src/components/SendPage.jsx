import { useEffect, useRef } from "react";
import { useDispatch, useSelector } from "react-redux";
import {
  addAttachments,
  attachmentRemoved,
  fieldChanged,
  metadataAdded,
  metadataChanged,
  metadataRemoved,
  RECIPIENT_KINDS,
  recipientAdded,
  recipientChanged,
  recipientRemoved,
  selectAttachmentProblems,
  selectCannotSend,
  selectSendErrors,
  sendEmail,
} from "../features/send.js";
import { hashFor } from "../features/nav.js";
import Attachments from "./Attachments.jsx";
import { Banner, Field } from "./common.jsx";
import DeliveryStatus from "./DeliveryStatus.jsx";
import HtmlPreview from "./HtmlPreview.jsx";
import MetadataRows from "./MetadataRows.jsx";
import Recipients, { KIND_LABELS } from "./Recipients.jsx";

// Hints only (noValidate): the server's answer is the authority.
const SENDER = [
  { id: "fromName", label: "From name", autoComplete: "name" },
  { id: "fromEmail", label: "From email", type: "email", required: true, autoComplete: "email" },
];
const ADD_LABELS = { to: "Add To recipient", cc: "Add Cc", bcc: "Add Bcc" };

export default function SendPage() {
  const dispatch = useDispatch();
  const { fields, recipients, metadata, attachments, sending, messageId } = useSelector((state) => state.send);
  const limits = useSelector((state) => state.limits.values);
  const errors = useSelector(selectSendErrors);
  const problems = useSelector(selectAttachmentProblems);
  const cannotSend = useSelector(selectCannotSend);
  const formRef = useRef(null);
  const bannerRef = useRef(null);
  const successRef = useRef(null);
  const wasSending = useRef(false);
  const addButtons = useRef({});
  const addMetadataButton = useRef(null);
  // The input to focus once the next render shows it (a row just added).
  const focusNext = useRef(null);

  // When an answer arrives, take focus to what it says: the first bad field (or file, or
  // list), the banner, or the message id.
  useEffect(() => {
    if (wasSending.current && !sending) {
      const invalid = formRef.current?.querySelector('[aria-invalid="true"], [data-error]');
      (invalid || bannerRef.current || successRef.current)?.focus();
    }
    wasSending.current = sending;
  }, [sending]);

  useEffect(() => {
    if (focusNext.current) {
      document.getElementById(focusNext.current)?.focus();
      focusNext.current = null;
    }
  });

  function submit(event) {
    event.preventDefault();
    dispatch(sendEmail());
  }

  function bodyKeyDown(event) {
    // Enter submits from any one-line field; in the bodies it is a new line, so Ctrl+Enter sends.
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      formRef.current?.requestSubmit();
    }
  }

  const field = (id) => ({
    id,
    value: fields[id],
    onChange: (event) => dispatch(fieldChanged({ name: id, value: event.target.value })),
    error: errors.at[id],
  });

  function addRecipient(kind) {
    const { payload } = dispatch(recipientAdded(kind));
    focusNext.current = `${payload.id}-email`;
  }

  function removeRecipient(row) {
    dispatch(recipientRemoved(row));
    addButtons.current[row.kind]?.focus();
  }

  function addMetadata() {
    const { payload } = dispatch(metadataAdded());
    focusNext.current = `${payload}-key`;
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
        {SENDER.map(({ id, ...props }) => (
          <Field key={id} {...props} {...field(id)} />
        ))}
        {RECIPIENT_KINDS.map((kind) => (
          <Recipients
            key={kind}
            kind={kind}
            rows={recipients[kind]}
            errorAt={errors.at}
            disabled={sending}
            onChange={(change) => dispatch(recipientChanged(change))}
            onRemove={removeRecipient}
          />
        ))}
        {["to", "cc", "bcc", "recipients"].map(
          (group) =>
            errors.at[group] && (
              <p key={group} className="field-error wide" tabIndex={-1} data-error>
                {group === "recipients" ? errors.at[group] : `${KIND_LABELS[group]}: ${errors.at[group]}`}
              </p>
            ),
        )}
        <div className="actions wide add-recipients">
          {RECIPIENT_KINDS.map((kind) => (
            <button
              key={kind}
              type="button"
              ref={(button) => {
                addButtons.current[kind] = button;
              }}
              disabled={sending}
              onClick={() => addRecipient(kind)}
            >
              {ADD_LABELS[kind]}
            </button>
          ))}
        </div>
        <Field {...field("subject")} label="Subject" className="wide" autoComplete="off" />
        <Field
          {...field("body")}
          label="Body"
          multiline
          rows={8}
          // Required unless there is an HTML body.
          required={!fields.html}
          onKeyDown={bodyKeyDown}
        />
        <Field {...field("html")} label="HTML body" multiline rows={8} spellCheck={false} onKeyDown={bodyKeyDown} />
        <HtmlPreview html={fields.html} />
        <Attachments
          attachments={attachments}
          problems={problems}
          errorAt={errors.at}
          limits={limits}
          disabled={sending}
          onPick={(files) => dispatch(addAttachments(files))}
          onRemove={(id) => dispatch(attachmentRemoved(id))}
        />
        <Field
          {...field("tags")}
          label="Tags"
          className="wide"
          autoComplete="off"
          hint={
            limits
              ? `Comma-separated: up to ${limits.maxTags}, ${limits.maxTagLength} characters each.`
              : "Comma-separated."
          }
        />
        <MetadataRows
          rows={metadata}
          errorAt={errors.at}
          disabled={sending}
          onAdd={addMetadata}
          onChange={(change) => dispatch(metadataChanged(change))}
          onRemove={(id) => {
            dispatch(metadataRemoved(id));
            addMetadataButton.current?.focus();
          }}
          addRef={addMetadataButton}
        />
        <div className="actions wide">
          <button type="submit" className="primary" disabled={sending || Boolean(cannotSend)}>
            {sending ? "Sending…" : "Send"}
          </button>
          <span className="muted small" data-testid="send-hint" aria-live="polite">
            {cannotSend || "Ctrl+Enter in a body sends too."}
          </span>
        </div>
      </form>
    </>
  );
}
