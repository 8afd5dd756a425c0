"""The site root. whitenoise serves the built UI (frontend/dist/index.html) before Django sees
the request; this view answers only when the UI has not been built."""

from django.http import HttpRequest, HttpResponse

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Gomail</title></head><body><main><h1>Gomail</h1>
<p>The browser UI has not been built. <code>make run</code> builds it
(<code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>),
then restart the web server.</p>
<p>The API is at <a href="/api/docs">/api/docs</a>, the admin at <a href="/admin/">/admin/</a>.</p>
</main></body></html>"""


def ui_not_built(request: HttpRequest) -> HttpResponse:
    return HttpResponse(NOT_BUILT, status=503)
