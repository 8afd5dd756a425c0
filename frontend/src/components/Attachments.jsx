import { useId } from "react";
import { formatSize } from "../sizes.js";

function limitsHint(limits) {
  if (!limits) return null;
  if (!limits.maxAttachments) return "Attachments are not accepted.";
  return (
    `Up to ${limits.maxAttachments} files, ${formatSize(limits.maxAttachmentBytes)} each, ` +
    `${formatSize(limits.maxAttachmentsBytes)} in all.`
  );
}

/**
 * The file picker and the picked files, each with its size, its problem (over a limit, or
 * the server's error about it) and a remove button.
 */
export default function Attachments({ attachments, problems, errorAt, limits, disabled, onPick, onRemove, pickerRef }) {
  const hintId = useId();
  const hint = limitsHint(limits);
  return (
    <div className="attachments wide">
      <div className="field">
        <label htmlFor="attachments">Attachments</label>
        <input
          id="attachments"
          ref={pickerRef}
          type="file"
          multiple
          disabled={disabled}
          aria-describedby={hint ? hintId : undefined}
          onChange={(event) => {
            onPick(event.target.files);
            event.target.value = ""; // picking the same file again (after removing it) adds it again
          }}
        />
        {hint && (
          <p id={hintId} className="muted small hint">
            {hint}
          </p>
        )}
      </div>
      {attachments.length > 0 && (
        <ul className="attachment-list" aria-label="Attached files">
          {attachments.map((attachment) => {
            const message = problems[attachment.id] || errorAt[attachment.id];
            const errorId = `${attachment.id}-error`;
            return (
              <li
                key={attachment.id}
                data-testid="attachment"
                className={message ? "invalid" : undefined}
                tabIndex={-1}
                data-error={message ? "" : undefined}
                aria-describedby={message ? errorId : undefined}
              >
                <span className="attachment-name">{attachment.filename}</span>{" "}
                <span className="muted" data-testid="attachment-size">
                  {formatSize(attachment.size)}
                </span>
                {attachment.status === "reading" && <span className="muted small"> reading…</span>}
                <button
                  type="button"
                  className="remove"
                  disabled={disabled}
                  aria-describedby={message ? errorId : undefined}
                  onClick={() => onRemove(attachment.id)}
                >
                  Remove {attachment.filename}
                </button>
                {message && (
                  <p id={errorId} className="field-error" data-testid="attachment-error">
                    {message}
                  </p>
                )}
              </li>
            );
          })}
        </ul>
      )}
      {errorAt.attachments && (
        <p className="field-error" tabIndex={-1} data-error>
          {errorAt.attachments}
        </p>
      )}
    </div>
  );
}
