"""A Standard Webhooks receiver for the webhook channel's tests.

Verifies every POST with the reference `standardwebhooks` package (PyPI) and the secret in
$WEBHOOK_SECRET, answers with the scripted statuses given as arguments (`503`, `429:2` for a
429 with `Retry-After: 2`, `200`; 200 once the script is used up), and serves what it received
at GET /log. Prints `LISTENING <port>` once it accepts connections on 127.0.0.1.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

webhook = Webhook(os.environ["WEBHOOK_SECRET"])
script = list(sys.argv[1:])
received = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with lock:
            body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        record = {
            "at": time.monotonic(),
            "webhook_id": headers.get("webhook-id"),
            "content_type": headers.get("content-type"),
        }
        try:
            payload = webhook.verify(body, headers)
            record["verified"] = True
            record["type"] = payload.get("type")
            record["id"] = payload.get("id")
            record["body"] = payload
        except Exception as err:  # the reference library's verification error
            record["verified"] = False
            record["error"] = str(err)
        with lock:
            step = script.pop(0) if script else "200"
            status, _, retry_after = step.partition(":")
            if not record["verified"]:
                status, retry_after = "401", ""
            record["status"] = int(status)
            received.append(record)
        self.send_response(int(status))
        if retry_after:
            self.send_header("retry-after", retry_after)
        self.send_header("content-length", "0")
        self.end_headers()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"LISTENING {server.server_address[1]}", flush=True)
server.serve_forever()
