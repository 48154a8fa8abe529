"""egress_addon: the egress sidecar's policy, as a mitmproxy (8.1.1) addon.

It enforces the routes file that bottle-reconciler renders
(state/<slug>/egress/egress_routes.yaml, which is JSON):

    {"routes": [{"host": "api.github.com",
                 "path_allowlist": ["/repos/acme/", "/user"],
                 "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]}

A request passes only when its host has a route, its Host header names that
same host, and its path lies under one of the route's prefixes. A route with
auth gets `Authorization: <auth_scheme> <value of $token_env>`, overwriting
whatever the client sent, over HTTPS only (or to a loopback upstream): a
plain-http request for such a route is refused and nothing is sent. Everything else is answered by the proxy itself:
403 for a refusal, 502 when a credential is missing, 500 when this code fails.
The table is re-read on SIGHUP; a file that is not valid keeps the old table.

Options (mitmdump --set NAME=VALUE), each falling back to an environment
variable, so a container can be configured either way:

    egress_routes   EGRESS_ROUTES_FILE   the routes file (required)
    egress_status   EGRESS_STATUS_FILE   a status file written after every
                                         load attempt ('' = none)

Standard library plus mitmproxy only. See README.md in this directory.
"""

import asyncio
import hashlib
import ipaddress
import json
import os
import re
import signal
import sys
import tempfile
import urllib.parse

from mitmproxy import ctx, exceptions, http

# Larger files are refused without parsing: the daemon renders a few KiB,
# and a runaway file must not make the proxy allocate without bound.
MAX_FILE_BYTES = 16 * 1024 * 1024

# Limits and character sets as the daemon's fragment validator has them
# (reconciler/model/fragment.c), so a file the daemon renders always loads.
HOST_MAX = 253
LABEL_MAX = 63
PATH_MAX = 2048
TOKEN_ENV_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}\Z")
# RFC 9110 token: the characters an auth scheme may have.
AUTH_SCHEME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
ROUTE_KEYS = {"host", "path_allowlist", "auth_scheme", "token_env"}

# How many rounds of percent-decoding a path segment gets when looking for
# a hidden "..", "/" or "\": a server or framework that decodes twice must
# not see one either. Legitimate paths rarely encode an encoding at all.
DECODE_ROUNDS = 3


class InvalidRoutes(ValueError):
    """The routes file cannot be used; the message says why."""


class Route:
    __slots__ = ("host", "paths", "auth_scheme", "token_env")

    def __init__(self, host, paths, auth_scheme, token_env):
        self.host = host
        self.paths = paths
        self.auth_scheme = auth_scheme
        self.token_env = token_env


def _no_duplicate_keys(pairs):
    # Python's json keeps the last of duplicate keys; another reader of the
    # same file may keep the first. Two readers that disagree on which route
    # is live is how a check gets bypassed, so duplicates are an error.
    out = {}
    for key, value in pairs:
        if key in out:
            raise InvalidRoutes(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name):
    raise InvalidRoutes(f"{name} is not JSON")


def _check_host(host, where):
    if not isinstance(host, str):
        raise InvalidRoutes(f"{where}.host: not a string")
    h = host.lower()
    if not h or len(h) > HOST_MAX:
        raise InvalidRoutes(f"{where}.host: {host!r}: empty or longer than {HOST_MAX} characters")
    labels = h.split(".")
    if not all(len(label) <= LABEL_MAX and LABEL_RE.match(label) for label in labels):
        raise InvalidRoutes(f"{where}.host: {host!r}: not an exact host name (letters, digits, '-', single dots)")
    if labels[-1].isdigit():
        # Numeric names are IPv4 addresses to URL parsers; only the dotted
        # quad without leading zeros means the same to every reader.
        quad = len(labels) == 4 and all(
            label.isdigit() and int(label) <= 255 and (label == "0" or label[0] != "0") for label in labels
        )
        if not quad:
            raise InvalidRoutes(f"{where}.host: {host!r}: numeric but not an IPv4 address")
    return h


def _check_paths(paths, where):
    if not isinstance(paths, list) or not paths:
        raise InvalidRoutes(f"{where}.path_allowlist: not a non-empty list")
    out = []
    for i, p in enumerate(paths):
        if not isinstance(p, str) or not p.startswith("/"):
            raise InvalidRoutes(f"{where}.path_allowlist[{i}]: not a string starting with '/'")
        if len(p) > PATH_MAX or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in p):
            raise InvalidRoutes(f"{where}.path_allowlist[{i}]: too long, or not printable ASCII")
        if "?" in p or "#" in p:
            # The query is not part of the match, so this entry can never
            # match anything. Refusing the whole file for it would hold the
            # bottle's other routes hostage; it is only a dead entry.
            ctx.log.warn(f"egress: {where}.path_allowlist[{i}] {p!r} contains '?' or '#' and never matches")
        if p not in out:
            out.append(p)
    return tuple(out)


def parse_routes(data):
    """Bytes of a routes file -> {host: Route}; raises InvalidRoutes."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidRoutes(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRoutes(f"not UTF-8: {e}") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise InvalidRoutes(f"not JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InvalidRoutes("nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidRoutes("the top level is not an object")
    # Other top-level keys belong to other tools and are left alone.
    if "routes" not in doc:
        raise InvalidRoutes("no 'routes' key")
    routes = doc["routes"]
    if not isinstance(routes, list):
        raise InvalidRoutes("'routes' is not a list")
    table = {}
    for i, r in enumerate(routes):
        where = f"routes[{i}]"
        if not isinstance(r, dict):
            raise InvalidRoutes(f"{where}: not an object")
        # A key this code does not know may be a restriction it would fail
        # to apply (say, "methods"): refuse rather than enforce less.
        unknown = sorted(set(r) - ROUTE_KEYS)
        if unknown:
            raise InvalidRoutes(f"{where}: unknown key {unknown[0]!r}")
        if "host" not in r:
            raise InvalidRoutes(f"{where}: needs host")
        host = _check_host(r["host"], where)
        if host in table:
            # The daemon merges duplicates before it writes; two entries
            # would leave it open which auth applies.
            raise InvalidRoutes(f"{where}.host: {host!r} has a route already")
        # No path_allowlist means every path of the host: the egress format
        # has it so, and the reconciler writes such routes that way.
        paths = _check_paths(r["path_allowlist"], where) if "path_allowlist" in r else ("/",)
        if ("auth_scheme" in r) != ("token_env" in r):
            raise InvalidRoutes(f"{where}: auth_scheme and token_env come together or not at all")
        scheme = env = None
        if "auth_scheme" in r:
            scheme, env = r["auth_scheme"], r["token_env"]
            # Not quoted back: a token pasted into the wrong field must not
            # end up in a log.
            if not isinstance(scheme, str) or not AUTH_SCHEME_RE.match(scheme):
                raise InvalidRoutes(f"{where}.auth_scheme: not an HTTP auth scheme such as Bearer")
            if not isinstance(env, str) or not TOKEN_ENV_RE.match(env):
                raise InvalidRoutes(f"{where}.token_env: not an environment variable name such as EGRESS_TOKEN_0")
        table[host] = Route(host, paths, scheme, env)
    return table


# ---- The request checks: each returns None (fine) or the reason to refuse.


def host_header_problem(req):
    """The Host header (and HTTP/2 :authority) must name the host that the
    proxy connects to: a server that routes by Host (a CDN, a virtual host)
    would otherwise hand another site the credential injected for this one."""
    names = req.headers.get_all("host")
    if req.is_http2:
        if req.authority:
            names = names + [req.authority]
    elif len(names) != 1:
        return f"expected one Host header, got {len(names)}"
    if not names:
        return "no Host header or :authority"
    default_port = 443 if req.scheme == "https" else 80
    for name in names:
        host, sep, port = name.rpartition(":")
        if not sep or "]" in port:  # no port (an IPv6 literal's colons are inside [])
            host, port = name, ""
        if host.lower() != req.host.lower():
            return f"Host header {name!r} does not name {req.host}"
        if port and port != str(req.port):
            return f"Host header {name!r} names another port than {req.port}"
        if not port and req.port != default_port:
            return f"Host header {name!r} has no port, but the request goes to port {req.port}"
    return None


def path_problem(path):
    """Refuses paths that a server might resolve to somewhere other than
    where their text says. Query and fragment are ignored by the caller."""
    if not path.startswith("/"):
        return "the path does not start with '/'"
    if "\\" in path:
        return "backslash in the path"
    for segment in path.split("/"):
        s = segment
        for _ in range(DECODE_ROUNDS + 1):
            # ";" starts path parameters, which some servers (Tomcat, Jetty)
            # strip before resolving: "..;x" is a dot segment to them.
            if s.split(";", 1)[0] in (".", ".."):
                return "dot segment in the path"
            if "/" in s or "\\" in s or "\x00" in s:
                return "encoded slash, backslash or NUL in the path"
            decoded = urllib.parse.unquote(s, errors="surrogateescape")
            if decoded == s:
                break
            s = decoded
    return None


def path_allowed(path, prefixes):
    """Prefix match on segment boundaries: "/user" allows "/user" and
    "/user/x" but not "/users"; "/repos/acme/" allows "/repos/acme/x";
    "/" allows every path."""
    for p in prefixes:
        if path == p or path.startswith(p if p.endswith("/") else p + "/"):
            return True
    return False


def _loopback(host):
    """127.0.0.0/8, ::1 and localhost: an upstream on the proxy's own host,
    where plain http never crosses a network (for tests and local helpers)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _answer(flow, status, reason):
    """Answers flow from the proxy itself, so nothing goes upstream."""
    flow.request.stream = False  # a streamed request could not be answered here
    flow.response = http.Response.make(
        status, f"egress: {reason}\n", {"Content-Type": "text/plain; charset=utf-8"}
    )


class Egress:
    # The addon manager's name for us; the unload guard looks it up.
    name = "egress"

    def __init__(self):
        self.table = {}  # host -> Route; empty (deny everything) until a load succeeds
        self.loads = 0  # successful loads by this instance
        self.sha256 = None  # of the bytes the table came from
        self.error = None  # why the last load attempt was refused, or None
        self.routes_path = ""
        self.status_path = ""
        self.hup_installed = False

    # ---- lifecycle

    def load(self, loader):
        loader.add_option("egress_routes", str, "", "Routes file to enforce (else $EGRESS_ROUTES_FILE).")
        loader.add_option(
            "egress_status", str, "", "Status file written after each load attempt (else $EGRESS_STATUS_FILE)."
        )

    def configure(self, updated):
        if "egress_routes" not in updated and "egress_status" not in updated:
            return
        routes = ctx.options.egress_routes or os.environ.get("EGRESS_ROUTES_FILE", "")
        if not routes:
            raise exceptions.OptionsError("egress: no routes file: set egress_routes or EGRESS_ROUTES_FILE")
        self.status_path = ctx.options.egress_status or os.environ.get("EGRESS_STATUS_FILE", "")
        if routes != self.routes_path:
            first = not self.routes_path
            self.routes_path = routes
            # The handler first, then the read: a SIGHUP that came before the
            # handler (the launcher ignores them until now) asked for a file
            # that this read sees anyway, so no reload is lost. mitmproxy
            # runs configure from its running event loop (the script loader
            # is a task); running() is the fallback if it ever does not.
            self.install_hup()
            # Loaded here, before the proxy listens: no request is ever
            # served by an instance that has not tried to load.
            self.reload("start" if first else "new routes file")

    def running(self):
        self.install_hup()

    def install_hup(self):
        if self.hup_installed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not from the loop; running() installs it
        loop.add_signal_handler(signal.SIGHUP, self.on_hup)
        self.hup_installed = True
        ctx.log.info(f"egress: SIGHUP reloads {self.routes_path} (pid {os.getpid()})")

    def done(self):
        loop = asyncio.get_running_loop()
        if self.hup_installed:
            loop.remove_signal_handler(signal.SIGHUP)
            # remove_signal_handler restores the default action, which kills
            # the process; a successor instance (a re-imported script)
            # installs its own handler, and until then SIGHUP is harmless.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            self.hup_installed = False
        if not ctx.master.should_exit.is_set():
            # Not a shutdown: mitmproxy is re-importing this script because
            # its mtime changed. A broken edit would leave the proxy running
            # with no filtering at all. Check right after the re-import (it
            # runs synchronously in this same callback) and stop the proxy
            # if no successor registered: fail closed.
            loop.call_soon(_check_successor)

    # ---- the table

    def on_hup(self):
        try:
            self.reload("SIGHUP")
        except Exception as e:  # a reload must never take the proxy down
            ctx.log.warn(f"egress: reload failed unexpectedly, keeping the old table: {e!r}")

    def reload(self, why):
        try:
            with open(self.routes_path, "rb") as f:
                # One read: the hash and the table come from the same bytes.
                data = f.read(MAX_FILE_BYTES + 1)
            table = parse_routes(data)
        except (OSError, InvalidRoutes) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.error = f"{self.routes_path}: {reason}"
            if self.loads == 0:
                ctx.log.warn(f"egress: {why}: cannot load, denying everything: {self.error}")
            else:
                ctx.log.warn(f"egress: {why}: refused, keeping sha256={self.sha256}: {self.error}")
            self.write_status()
            return False
        self.table = table
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.loads += 1
        self.error = None
        # The line a reconciler can wait for to confirm that given bytes are live.
        ctx.log.info(f"egress: loaded sha256={self.sha256} routes={len(table)} loads={self.loads}")
        self.write_status()
        return True

    def write_status(self):
        """Writes the status file atomically: readers see the old JSON or the
        new, never a mix. Failure to write is logged, never fatal."""
        if not self.status_path:
            return
        status = {
            "loads": self.loads,
            "sha256": self.sha256,
            "pid": os.getpid(),
            "routes": len(self.table),
            "error": self.error,
        }
        d = os.path.dirname(os.path.abspath(self.status_path))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(self.status_path) + ".")
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(status) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.status_path)
            tmp = None
        except OSError as e:
            ctx.log.warn(f"egress: cannot write the status file {self.status_path}: {e}")
        finally:
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    # ---- the checks

    def decide(self, flow):
        """Refuses flow (sets its response) or prepares it to go upstream."""
        req = flow.request
        host = req.host.lower()
        route = self.table.get(host)
        if route is None:
            return self.refuse(flow, f"no route for host {host}")
        problem = host_header_problem(req)
        if problem:
            return self.refuse(flow, problem)
        raw = req.path
        if "#" in raw:
            return self.refuse(flow, "'#' in the request target")
        path = raw.split("?", 1)[0]  # the query is not part of the match
        problem = path_problem(path)
        if problem:
            return self.refuse(flow, problem)
        if not path_allowed(path, route.paths):
            return self.refuse(flow, f"path {path} is not allowed for {host}")
        # Credentials meant for this proxy never travel on.
        req.headers.pop("Proxy-Authorization", None)
        if route.token_env:
            if req.scheme != "https" and not _loopback(host):
                # Plain http would carry the credential across the network in
                # clear text, to whoever answers for the host on the way.
                return self.refuse(flow, f"the credential for {host} is sent over HTTPS only, not plain http")
            value = os.environ.get(route.token_env, "")
            if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                # Never send the request without its credential: the agent
                # would learn nothing useful and the upstream would log it.
                ctx.log.warn(
                    f"egress: {req.method} {host}{path}: ${route.token_env} is unset, empty or malformed"
                )
                return _answer(flow, 502, f"the credential for {host} (${route.token_env}) is not configured")
            # Setting the header replaces every Authorization the client sent.
            req.headers["Authorization"] = f"{route.auth_scheme} {value}"

    def refuse(self, flow, reason):
        req = flow.request
        ctx.log.warn(f"egress: refused {req.method} {req.host}{req.path.split('?', 1)[0]}: {reason}")
        _answer(flow, 403, f"refused: {reason}")

    # ---- hooks: every one fails closed

    def requestheaders(self, flow):
        # Decided on the headers, before any body is read: a streamed
        # request goes upstream right after this hook.
        self._guard(flow, self.decide)

    def request(self, flow):
        # Decided again on the complete request, with the table as it is now
        # (a reload may have come while the body was read). Idempotent.
        if flow.response is None:
            self._guard(flow, self.decide)

    def http_connect(self, flow):
        self._guard(flow, self.decide_connect)

    def decide_connect(self, flow):
        host = flow.request.host.lower()
        if host not in self.table:
            self.refuse(flow, f"no route for host {host}")

    def tcp_start(self, flow):
        # Raw TCP inside a CONNECT tunnel would bypass every path check. The
        # launcher turns rawtcp off; this holds even if someone turns it on.
        ctx.log.warn(f"egress: killed a raw TCP connection to {flow.server_conn.address}")
        flow.kill()

    def _guard(self, flow, check):
        try:
            check(flow)
        except Exception as e:
            # mitmproxy would log an exception from a hook and carry on,
            # sending the request as it is. Never that.
            try:
                ctx.log.warn(f"egress: internal error, request answered 500: {e!r}")
                _answer(flow, 500, "internal error in the egress policy; the request was not sent")
            except Exception:
                flow.kill()


def _check_successor():
    if ctx.master.addons.get(Egress.name) is None:
        # Straight to stderr and out: mitmproxy's log is written by a later
        # task, and every moment spent waiting for it the proxy would serve
        # requests with no policy. Exit status 1, so a supervisor restarts
        # it (and a start with a broken script fails, also with status 1).
        print("egress: the policy addon was unloaded (a broken edit of the script?); exiting", file=sys.stderr, flush=True)
        sys.exit(1)


addons = [Egress()]
