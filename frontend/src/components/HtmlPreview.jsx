/**
 * The HTML body as a mail app would show it, in a sandboxed frame: an empty `sandbox` allows
 * nothing (no scripts, no forms, no navigation of this page), and srcdoc keeps it off the
 * network except for what the page's Content-Security-Policy allows.
 */
export default function HtmlPreview({ html }) {
  return (
    <section className="html-preview wide" aria-labelledby="html-preview-heading">
      <h2 id="html-preview-heading" className="subheading">
        HTML preview
      </h2>
      {html ? (
        // Out of the Tab order: it is to look at; the HTML is edited in the field above.
        <iframe title="HTML preview" sandbox="" srcDoc={html} tabIndex={-1} data-testid="html-preview" />
      ) : (
        <p className="muted small">The HTML body shows here as you type it. Scripts in it never run.</p>
      )}
    </section>
  );
}
