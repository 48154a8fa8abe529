"""egress_client: sends requests through the egress proxy on ONE connection.

    egress_client.py PROXY_PORT

Reads one JSON request per line on stdin, {"url": ..., "headers": {...}},
sends it (absolute-form GET, as an HTTP proxy client does) on the same
keep-alive connection to 127.0.0.1:PROXY_PORT, and writes one JSON line:
{"status", "body", "local_port", "same_connection"}, or {"error"} when the
connection failed. same_connection says the request went on the very socket
of the first one: http.client would quietly open a new one if the proxy had
closed it, and the test is about the old one surviving a reload.
Standard library only.
"""

import http.client
import json
import sys


def main():
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
    first = None
    for line in sys.stdin:
        req = json.loads(line)
        try:
            # An absolute URL: http.client takes the Host header from it.
            conn.request("GET", req["url"], headers=req.get("headers", {}))
            if first is None:
                first = conn.sock
            sock = conn.sock
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            out = {
                "status": resp.status,
                "body": body,
                "local_port": sock.getsockname()[1],
                "same_connection": sock is first and conn.sock is first,
            }
        except (OSError, http.client.HTTPException) as e:
            out = {"error": repr(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
