"""kombu's SQS transport, with one fix: a failed receive does not stop the worker consuming.

kombu 5.7's asynchronous SQS client answers a receive that failed with a timeout or a server
error (HTTP 5xx; pycurl reports a dropped or refused connection as 599) with an empty *list*
(``AsyncAWSQueryConnection._on_list_ready``), while ``Channel._on_messages_ready`` expects the
parsed *dict* and calls ``.get("Messages")`` on it. The AttributeError escapes Celery's event
loop and the worker's consumer stops for good: the process stays up, consuming nothing, after
the first blip of SQS. Found by the system tests (tests/system, SQS unreachable during ingest).
Here a non-dict answer means what kombu meant by it: no messages this time.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import SQS


class Channel(SQS.Channel):
    def _on_messages_ready(self, queue: Any, qname: str, messages: Any) -> int:
        if not isinstance(messages, dict):
            return 0
        return super()._on_messages_ready(queue, qname, messages)


class Transport(SQS.Transport):
    Channel = Channel


# What Celery's ``broker_transport`` names (gomail_site.celery): the broker URL stays sqs://.
TRANSPORT = f"{__name__}:Transport"
