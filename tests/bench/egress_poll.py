"""egress_poll: the client of benchmark scenario 6 (tests/bench/README.md).
It asks an egress proxy, over and over, whether a request to a host is
allowed yet; it never decides what a time is (the upstream's record does).

    egress_poll.py PROXY_HOST PROXY_PORT

Reads one JSON line per change on stdin, {"url": URL, "timeout_s": S}, and
answers with two JSON lines on stdout:

1. after the first request: {"refused": true, ...} when the proxy answered
   403 with its own refusal ("egress: refused: ..."), else {"refused": false,
   "status": ..., "body": ...} and nothing more for this URL. The harness
   makes the change only after this line, so every timing starts from a
   request the proxy refused.
2. once a request is answered 200 (or after timeout_s):
   {"status": 200, "polls": N, "reconnects": N, "sent_ns": CLOCK_REALTIME
   when that request was sent, "t_ns": when its answer came, "rtt_us":
   [median, max] of the refused polls}.

Between the two it polls in a tight loop, on one keep-alive connection to
the proxy, as an agent behind it keeps its connection: mitmproxy answers a
refusal on the same connection, and a reload keeps it (contrib/egress
README). A connection the proxy closes is opened again and counted.
Standard library only."""

import http.client
import json
import sys
import time


def main():
    proxy_host, proxy_port = sys.argv[1], int(sys.argv[2])
    conn = None
    reconnects = 0

    def ask(url):
        nonlocal conn, reconnects
        for attempt in (0, 1):
            if conn is None:
                conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=10)
            try:
                conn.request("GET", url)
                r = conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
                if attempt:
                    raise
                reconnects += 1

    for line in sys.stdin:
        want = json.loads(line)
        url = want["url"]
        status, body = ask(url)
        first = body.decode("utf-8", "replace")[:200]
        refused = status == 403 and first.startswith("egress: refused: ")
        print(json.dumps({"refused": refused, "status": status, "body": first}), flush=True)
        if not refused:
            continue
        deadline = time.monotonic() + want.get("timeout_s", 30)
        polls, rtts = 1, []
        while True:
            t = time.perf_counter_ns()
            sent = time.time_ns()
            status, body = ask(url)
            now = time.time_ns()
            polls += 1
            if status != 403:
                break
            rtts.append(time.perf_counter_ns() - t)
            if time.monotonic() > deadline:
                break
        rtts.sort()
        print(json.dumps({"status": status, "polls": polls, "reconnects": reconnects, "sent_ns": sent, "t_ns": now,
                          "body": body.decode("utf-8", "replace")[:200] if status != 200 else "",
                          "rtt_us": [rtts[len(rtts) // 2] // 1000, rtts[-1] // 1000] if rtts else None}),
              flush=True)


if __name__ == "__main__":
    main()
