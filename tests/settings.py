"""Settings for the test suite: the project's settings against a test moto server.

The moto server is started by ``tests/conftest.py`` on a free port chosen here, before the
configuration is loaded, so every process the tests start (workers included) inherits it.
Under pytest-xdist each worker picks its own port (the controller's choice, inherited through
the environment, would be the same for all of them), and gets its own test database (SQLite:
a file named after its process; PostgreSQL: pytest-django's ``test_<name>_gw<N>``) and so its
own database cache.
"""

import os
import tempfile

from tests.ports import unused_port

if "PYTEST_XDIST_WORKER" in os.environ:  # the controller's choice is not this worker's
    for variable in ("GOMAIL_TEST_MOTO_PORT", "GOMAIL_AWS__ENDPOINT_URL"):
        os.environ.pop(variable, None)
os.environ.setdefault("GOMAIL_TEST_MOTO_PORT", str(unused_port()))
os.environ.setdefault(
    "GOMAIL_AWS__ENDPOINT_URL", f"http://127.0.0.1:{os.environ['GOMAIL_TEST_MOTO_PORT']}"
)
# A config file a developer keeps for `make run` must not leak into the tests.
os.environ.setdefault("GOMAIL_CONFIG", os.path.join(os.path.dirname(__file__), "gomail.test.yaml"))
# Every process of the suite (workers included) adds its metrics to one fresh directory.
# Always a fresh one: another run's counts (make run's, say) would skew the metric tests.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gomail-metrics-")
for variable, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(variable, value)

from gomail_site.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not SQLite's in-memory default: Celery workers started by the tests (other
    # processes) must see the same test database.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"gomail-test-{os.getpid()}.sqlite3")
    }
