#!/usr/bin/python3
"""An HTTP proxy in front of the API stand-in that refuses chosen requests,
as an API server does for a type the service account may not list.

    controller_proxy.py UPSTREAM_URL DENY_REGEX

Listens on 127.0.0.1 (a free port), prints "proxy listening on http://..."
and forwards everything to UPSTREAM_URL, streaming responses (watches),
except GET requests whose path matches DENY_REGEX and that are not watches:
those get 403 with a Kubernetes Status, like RBAC's refusal.
"""
import http.client
import http.server
import json
import re
import sys
import urllib.parse

UP = urllib.parse.urlparse(sys.argv[1])
DENY = re.compile(sys.argv[2])
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def deny(self):
        path = urllib.parse.urlparse(self.path).path
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "Forbidden", "code": 403,
                           "message": "%s is forbidden: the test proxy refuses this list" % path
                           }).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def relay(self):
        q = urllib.parse.urlparse(self.path)
        if self.command == "GET" and DENY.search(q.path) and "watch=" not in (q.query or ""):
            return self.deny()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        c = http.client.HTTPConnection(UP.hostname, UP.port, timeout=600)
        c.request(self.command, self.path, body=body, headers=headers)
        r = c.getresponse()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if r.getheader("Content-Length") is not None:
            data = r.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        c.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
print("proxy listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
