#!/usr/bin/env python3
"""A stand-in Docker Engine on a unix socket, for the docker driver's tests of
what it does with each kind of answer (no Docker needed).

    docker_standin.py SOCKET SCRIPT LOG

Every request is appended to LOG as "METHOD PATH". SCRIPT is a JSON file,
read afresh on each request, mapping a request kind to its answer:

    {"inspect": {"status": 200, "body": {...}, "delay_ms": 0},
     "kill":    {"status": 204},
     "events":  {"status": 200}}

A kind that is missing answers 404 {"message": "No such container"}. The
events stream, when answered 200, stays open and sends nothing.
"""
import http.server
import json
import os
import socketserver
import sys
import time

SOCKET, SCRIPT, LOG = sys.argv[1:4]


def answer_for(kind):
    try:
        with open(SCRIPT) as f:
            script = json.load(f)
    except (OSError, ValueError):
        script = {}
    return script.get(kind, {"status": 404, "body": {"message": "No such container"}})


class Engine(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        with open(LOG, "a") as log:
            log.write("%s %s\n" % (self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        if path.endswith("/events"):
            kind = "events"
        elif path.endswith("/kill"):
            kind = "kill"
        elif path.endswith("/json"):
            kind = "inspect"
        else:
            kind = "other"
        a = answer_for(kind)
        time.sleep(a.get("delay_ms", 0) / 1000)
        status = a.get("status", 200)
        if kind == "events" and status == 200:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            while True:
                time.sleep(1)
        body = b"" if status == 204 else json.dumps(a.get("body", {})).encode()
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = handle_any
    do_POST = handle_any


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (timed out, closed the stream) is not news


if os.path.exists(SOCKET):
    os.unlink(SOCKET)
Server(SOCKET, Engine).serve_forever()
