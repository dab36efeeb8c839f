"""A recording HTTP target for the Docker scenarios (standard library only).

Every request outside /_* is recorded (method, path, headers, body) and answered 200, or 503
for the first FAIL_FIRST requests (and for as many as a POST /_fail?n=N asks for).
GET /_health, GET /_count -> {"count": n}, GET /_requests -> [ ... ], POST /_reset.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
REQUESTS = []
FAIL_LEFT = [int(os.environ.get("FAIL_FIRST", "0"))]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _control(self):
        url = urlsplit(self.path)
        with LOCK:
            if url.path == "/_health":
                return self._send(200, b'{"status":"ok"}')
            if url.path == "/_count":
                return self._send(200, json.dumps({"count": len(REQUESTS)}).encode())
            if url.path == "/_requests":
                return self._send(200, json.dumps(REQUESTS).encode())
            if url.path == "/_reset":
                REQUESTS.clear()
                return self._send(200, b"{}")
            if url.path == "/_fail":
                FAIL_LEFT[0] = int(parse_qs(url.query).get("n", ["1"])[0])
                return self._send(200, b"{}")
        return self._send(404, b'{"detail":"unknown control path"}')

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with LOCK:
            REQUESTS.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                }
            )
            fail = FAIL_LEFT[0] > 0
            if fail:
                FAIL_LEFT[0] -= 1
        if fail:
            return self._send(503, b'{"detail":"scripted failure"}')
        return self._send(200, b'{"ok":true}')

    def _handle(self):
        if self.path.startswith("/_"):
            return self._control()
        return self._record()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "9000"))
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
