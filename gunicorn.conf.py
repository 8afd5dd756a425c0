"""gunicorn's settings for the API (read from the working directory by every ``gunicorn``
started here: the Procfile's ``web`` line, the tests' and the benchmarks' API processes).

Threads, not one request per process: the API's requests wait on SQS most of their time, and
the requests a process holds at once leave in one SendMessageBatch (``emails.batching``).
The figures are measured, see docs/performance.md; override any of them on the command line.
"""

import os

workers = int(os.environ.get("GOMAIL_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GOMAIL_WEB_THREADS", "4"))
# Clients that keep their connection (other services, load balancers) skip a TCP handshake.
keepalive = 5
