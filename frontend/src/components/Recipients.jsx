import { Field } from "./common.jsx";

export const KIND_LABELS = { to: "To", cc: "Cc", bcc: "Bcc" };

// The first row of a kind is "To email", the next ones "To email 2", ...: the labels of the
// original one-recipient form stay as they were.
const numbered = (text, index) => (index ? `${text} ${index + 1}` : text);

/**
 * The rows of one kind of recipient (to, cc or bcc): name and email, each with its own error,
 * and a remove button (none on the only To row: an email needs one).
 */
export default function Recipients({ kind, rows, errorAt, disabled, onChange, onRemove, onKeyDown }) {
  if (!rows.length) return null;
  const label = KIND_LABELS[kind];
  const removable = kind !== "to" || rows.length > 1;
  return (
    <div className="recipients wide" role="group" aria-label={`${label} recipients`}>
      {rows.map((row, index) => (
        <div className="recipient-row" key={row.id} data-testid={`${kind}-row`}>
          <Field
            id={`${row.id}-name`}
            label={numbered(`${label} name`, index)}
            autoComplete="off"
            value={row.name}
            onChange={(event) => onChange({ kind, id: row.id, part: "name", value: event.target.value })}
            onKeyDown={onKeyDown}
            error={errorAt[`${row.id}.name`]}
          />
          <Field
            id={`${row.id}-email`}
            label={numbered(`${label} email`, index)}
            type="email"
            required
            autoComplete="off"
            value={row.email}
            onChange={(event) => onChange({ kind, id: row.id, part: "email", value: event.target.value })}
            onKeyDown={onKeyDown}
            error={errorAt[`${row.id}.email`]}
          />
          {removable && (
            <button
              type="button"
              className="remove"
              disabled={disabled}
              onClick={() => onRemove({ kind, id: row.id })}
            >
              {numbered(`Remove ${label} recipient`, index)}
            </button>
          )}
          {errorAt[row.id] && (
            <p className="field-error row-error" tabIndex={-1} data-error>
              {errorAt[row.id]}
            </p>
          )}
        </div>
      ))}
    </div>
  );
}
