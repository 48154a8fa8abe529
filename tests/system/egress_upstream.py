"""egress_upstream: a loopback HTTP(S) server for the egress proxy tests.

Answers every request 200 with a JSON echo of what it received (method,
path, headers in order, as sent, and time_ns: CLOCK_REALTIME when the
request line arrived) and appends the same JSON as one line to the record
file, so a test can tell what reached the upstream from what the client was
told, and the benchmark (tests/bench, scenario 6) when it reached it.

    egress_upstream.py --record FILE --port-file FILE [--tls CERT KEY] [--bind ADDR]

Binds 127.0.0.1 (or ADDR, an address of this host that is not loopback, for
the checks that depend on it) port 0 (a free port, no race) and writes the
port to --port-file (temp file + rename) once it listens. Standard library
only.
"""

import argparse
import http.server
import json
import os
import ssl
import threading
import time

lock = threading.Lock()


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do
    # The headers and the body go out in two writes: with Nagle's algorithm
    # the body waits for the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True

    def parse_request(self):
        self.arrived_ns = time.time_ns()
        return super().parse_request()

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        seen = {
            "method": self.command,
            "path": self.path,
            # A list, not a dict: a header sent twice must show twice.
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
            "time_ns": self.arrived_ns,
        }
        line = (json.dumps(seen) + "\n").encode()
        with lock:
            with open(self.server.record, "ab") as f:
                f.write(line)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(line)))
        self.end_headers()
        self.wfile.write(line)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = answer

    def log_message(self, *args):
        pass  # the record file is the log


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--bind", default="127.0.0.1")
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer((args.bind, 0), Echo)
    server.daemon_threads = True
    server.record = args.record
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    tmp = f"{args.port_file}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
