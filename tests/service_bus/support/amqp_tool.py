#!/usr/bin/env python3
"""Independent AMQP 1.0 client (python-qpid-proton) for tests/service_bus and benches/publish.rs.

Subcommands (all print JSON on stdout):
  declare URL QUEUE...          attach a sender to /queue/<name> (RabbitMQ 3.x declares a durable queue)
  recv URL ADDRESS COUNT TIMEOUT  read up to COUNT messages (accepting them), one JSON object per line
  drain URL ADDRESS TIMEOUT      read and discard until idle for TIMEOUT seconds; prints {"drained": n}
  bench URL ADDRESS N SIZE       send N durable messages of SIZE bytes, wait for every disposition
"""
import json, sys, time, uuid
from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container, LinkOption
from proton import Terminus


class DurableTarget(LinkOption):
    def apply(self, link):
        link.target.durability = Terminus.DELIVERIES


def jsonable(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


class Recv(MessagingHandler):
    def __init__(self, url, address, count, timeout):
        super().__init__(prefetch=0, auto_accept=False)
        self.url, self.address, self.count, self.timeout = url, address, count, timeout
        self.got = 0

    def on_start(self, event):
        self.conn = event.container.connect(self.url, sasl_enabled=True, allowed_mechs="PLAIN ANONYMOUS")
        self.rx = event.container.create_receiver(self.conn, self.address)
        self.rx.flow(self.count)
        self.timer = event.container.schedule(self.timeout, self)

    def on_timer_task(self, event):
        self.conn.close()

    def on_message(self, event):
        m = event.message
        out = {
            "body": jsonable(m.body),
            "body_type": type(m.body).__name__,
            "id": jsonable(m.id),
            "correlation_id": jsonable(m.correlation_id),
            "subject": m.subject,
            "content_type": jsonable(m.content_type),
            "group_id": m.group_id,
            "durable": m.durable,
            "ttl": m.ttl,
            "priority": m.priority,
            "properties": jsonable(m.properties or {}),
            "annotations": jsonable(m.annotations or {}),
            "address": m.address,
        }
        print(json.dumps(out), flush=True)
        self.accept(event.delivery)
        self.got += 1
        if self.got >= self.count:
            self.timer.cancel()
            self.conn.close()


class Drain(MessagingHandler):
    def __init__(self, url, address, idle):
        super().__init__(prefetch=500)
        self.url, self.address, self.idle, self.n = url, address, idle, 0

    def on_start(self, event):
        self.container = event.container
        self.conn = event.container.connect(self.url, sasl_enabled=True, allowed_mechs="PLAIN ANONYMOUS")
        event.container.create_receiver(self.conn, self.address)
        self.timer = event.container.schedule(self.idle, self)

    def on_timer_task(self, event):
        self.conn.close()

    def on_message(self, event):
        self.n += 1
        self.timer.cancel()
        self.timer = self.container.schedule(self.idle, self)


class Declare(MessagingHandler):
    def __init__(self, url, queues):
        super().__init__()
        self.url, self.queues, self.open = url, queues, 0

    def on_start(self, event):
        self.conn = event.container.connect(self.url, sasl_enabled=True, allowed_mechs="PLAIN ANONYMOUS")
        for q in self.queues:
            # RabbitMQ 3.x declares /queue/<name> durable only when the target terminus is durable
            event.container.create_sender(self.conn, "/queue/" + q, options=DurableTarget())

    def on_link_opened(self, event):
        self.open += 1
        if self.open >= len(self.queues):
            self.conn.close()


class Bench(MessagingHandler):
    def __init__(self, url, address, n, size):
        super().__init__()
        self.url, self.address, self.n, self.size = url, address, n, size
        self.sent = self.confirmed = self.rejected = 0

    def on_start(self, event):
        self.conn = event.container.connect(self.url, sasl_enabled=True, allowed_mechs="PLAIN ANONYMOUS")
        event.container.create_sender(self.conn, self.address)
        self.t0 = time.monotonic()

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.n:
            m = Message(id="bench-%d" % self.sent, body=b"x" * self.size, durable=True,
                        content_type="application/json")
            event.sender.send(m)
            self.sent += 1

    def on_accepted(self, event):
        self.confirmed += 1
        self._check(event)

    def on_rejected(self, event):
        self.rejected += 1
        self.confirmed += 1
        self._check(event)

    def _check(self, event):
        if self.confirmed >= self.n:
            self.elapsed = time.monotonic() - self.t0
            event.connection.close()


def main():
    cmd, url = sys.argv[1], sys.argv[2]
    if cmd == "declare":
        Container(Declare(url, sys.argv[3:])).run()
        print(json.dumps({"declared": sys.argv[3:]}))
    elif cmd == "recv":
        Container(Recv(url, sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))).run()
    elif cmd == "drain":
        h = Drain(url, sys.argv[3], float(sys.argv[4]))
        Container(h).run()
        print(json.dumps({"drained": h.n}))
    elif cmd == "bench":
        h = Bench(url, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        Container(h).run()
        print(json.dumps({"sent": h.sent, "rejected": h.rejected, "seconds": h.elapsed,
                          "msgs_per_sec": h.n / h.elapsed}))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
