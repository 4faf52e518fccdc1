#!/usr/bin/env python3
"""Raw AMQP 1.0 send rate of a broker, measured by an independent client (python-qpid-proton).

Usage: amqp_send_rate.py URL COUNT SIZE   e.g. amqp://guest:guest@127.0.0.1:5672 20000 2048
Sends COUNT durable messages of SIZE bytes to a scratch queue on a loopback broker, waits
for every settlement (the broker's acceptance), prints "<rate> msg/s (<count> accepted in <s> s)"
and deletes the scratch queue. Bounded: stops after COUNT messages or 60 s, whichever comes first.
"""
import sys
import time
from urllib.parse import urlparse

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

QUEUE = "/queue/defender-bench-raw"


class Sender(MessagingHandler):
    def __init__(self, url, count, size):
        super().__init__()
        self.url, self.count, self.body = url, count, "x" * size
        self.sent = self.accepted = 0
        self.started = self.finished = None

    def on_start(self, event):
        host = urlparse(self.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("loopback brokers only")
        self.deadline = time.monotonic() + 60
        conn = event.container.connect(self.url, allowed_mechs="PLAIN", sasl_enabled=True)
        event.container.create_sender(conn, QUEUE)

    def on_sendable(self, event):
        if self.started is None:
            self.started = time.monotonic()
        while event.sender.credit and self.sent < self.count and time.monotonic() < self.deadline:
            event.sender.send(Message(body=self.body, durable=True))
            self.sent += 1

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted >= self.count or time.monotonic() > self.deadline:
            self.finished = time.monotonic()
            event.connection.close()

    def on_rejected(self, event):
        self.on_accepted(event)


def main():
    url, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sender = Sender(url, count, size)
    Container(sender).run()
    elapsed = (sender.finished or time.monotonic()) - (sender.started or time.monotonic())
    rate = sender.accepted / elapsed if elapsed > 0 else 0
    print(f"{rate:.0f} msg/s ({sender.accepted} accepted in {elapsed:.2f} s)")
    # Leave the broker as it was: delete the scratch queue and its messages.
    import subprocess
    subprocess.run(["rabbitmqctl", "-q", "delete_queue", "defender-bench-raw"], capture_output=True, timeout=30)


if __name__ == "__main__":
    main()
