import { Field } from "./common.jsx";

const numbered = (text, index) => (index ? `${text} ${index + 1}` : text);

/** Metadata as key/value rows (sent as {"key": "value"}), each with its error and a remove button. */
export default function MetadataRows({ rows, errorAt, disabled, onAdd, onChange, onRemove, addRef }) {
  return (
    <div className="metadata wide" role="group" aria-labelledby="metadata-heading">
      <h2 id="metadata-heading" className="subheading">
        Metadata
      </h2>
      {rows.map((row, index) => (
        <div className="metadata-row" key={row.id} data-testid="metadata-row">
          <Field
            id={`${row.id}-key`}
            label={numbered("Metadata key", index)}
            autoComplete="off"
            value={row.key}
            onChange={(event) => onChange({ id: row.id, part: "key", value: event.target.value })}
            error={errorAt[row.id]}
          />
          <Field
            id={`${row.id}-value`}
            label={numbered("Metadata value", index)}
            autoComplete="off"
            value={row.value}
            onChange={(event) => onChange({ id: row.id, part: "value", value: event.target.value })}
          />
          <button type="button" className="remove" disabled={disabled} onClick={() => onRemove(row.id)}>
            {numbered("Remove metadata", index)}
          </button>
        </div>
      ))}
      {errorAt.metadata && (
        <p className="field-error" tabIndex={-1} data-error>
          {errorAt.metadata}
        </p>
      )}
      <button type="button" ref={addRef} disabled={disabled} onClick={onAdd}>
        Add metadata
      </button>
    </div>
  );
}
