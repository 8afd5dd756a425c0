// Small building blocks shared by the pages.

/**
 * A labelled input (or textarea) with its own error message, tied by aria-describedby, and
 * an optional hint after it.
 */
export function Field({ id, label, error, hint, multiline = false, required = false, className = "", ...props }) {
  const Control = multiline ? "textarea" : "input";
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const describedBy = [error && errorId, hint && hintId].filter(Boolean).join(" ");
  return (
    <div className={`field ${className}`}>
      <label htmlFor={id} className={required ? "required" : undefined}>
        {label}
      </label>
      <Control
        id={id}
        name={id}
        required={required}
        aria-invalid={error ? "true" : "false"}
        aria-describedby={describedBy || undefined}
        {...props}
      />
      {error && (
        <p id={errorId} className="field-error">
          {error}
        </p>
      )}
      {hint && (
        <p id={hintId} className="muted small hint">
          {hint}
        </p>
      )}
    </div>
  );
}

/** An error banner, announced when it appears and focusable so pages can move focus to it. */
export function Banner({ children, ref }) {
  return (
    <div className="banner" role="alert" data-testid="banner" tabIndex={-1} ref={ref}>
      {children}
    </div>
  );
}

/** A date and time from the API (ISO 8601), in the reader's locale; a dash when absent. */
export function Time({ value }) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return <time dateTime={value}>{date.toLocaleString()}</time>;
}

export const STATUS_HINTS = {
  queued: "waiting for a provider",
  sending: "being handed to a provider",
  sent: "accepted by the provider",
  failed: "will be retried",
  dead: "could not be delivered",
};

/** An email status as a coloured badge; the text is the API's value. */
export function StatusBadge({ status, testId }) {
  return (
    <span className={`badge status-${status}`} data-testid={testId} data-status={status}>
      {status}
    </span>
  );
}
