#!/usr/bin/env python3
"""bench.py: the scenarios of tests/bench/README.md, run against the daemon and
its alternatives in one run, interleaved. Started by run.sh, which builds the
binaries; it measures and prints, it never asserts a time.

Every time comes from a sidecar's own log line (CLOCK_REALTIME, written by
br-test-sidecar when it loaded the bytes): how often this script looks at the
logs changes how long a run takes, not what it reports."""

import argparse
import collections
import ctypes
import hashlib
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FRAGMENT = "bench.json"  # the one fragment each bottle has; raw-limit knows this name

# The pipelock file of tests/system/bottles.sh, with the hosts the run adds
# appended to api_allowlist the way the daemon's splice does.
PIPELOCK_HEAD = """# pipelock config for this bottle; hand-maintained keys stay as they are
mode: strict   # strict enforces api_allowlist

api_allowlist:
  - pypi.org       # package index
  - "files.pythonhosted.org"
"""
PIPELOCK_TAIL = """
dlp:
  scan_bodies: true   # keep
  patterns: [aws_key, github_token]
# end of file
"""


def pipelock_bytes(hosts):
    return (PIPELOCK_HEAD + "".join(f"  - {h}\n" for h in hosts) + PIPELOCK_TAIL).encode()


def egress_bytes(host, paths):
    """A fragment in the canonical egress form: the daemon renders exactly
    these bytes (json.dumps(indent=2) + newline), jq --indent 2 too, and
    raw-limit copies them."""
    return (json.dumps({"routes": [{"host": host, "path_allowlist": paths}]}, indent=2) + "\n").encode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # A benchmark killed half-way must not leave 20,000 sidecars behind.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


CHILDREN = []


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    p = subprocess.Popen(argv, preexec_fn=_die_with_parent, close_fds=True, **kw)
    CHILDREN.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=30, group=False):
    if p.poll() is None:
        try:
            if group:
                os.killpg(p.pid, sig)
            else:
                p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            (os.killpg(p.pid, signal.SIGKILL) if group else p.kill())
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)
    return p.returncode


def stop_daemons(daemons):
    """Stops the daemons still running at the end of a scenario, killed
    when they do not stop (a scenario that failed half way)."""
    for d in daemons:
        if d.proc and d.proc.poll() is None:
            try:
                d.stop()
            except (OSError, RuntimeError):
                stop(d.proc, signal.SIGKILL)


def kill_all_children():
    for p in list(CHILDREN):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p in list(CHILDREN):
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    CHILDREN.clear()


def descendants(pid):
    """pid and every process below it, from /proc."""
    children = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


# The reload drivers' default start-up grace (grace_ms: 2000), and a margin.
GRACE_S = 2.1


def proc_sample(pids):
    """CPU ticks (of the process and its reaped children), context switches (voluntary + nonvoluntary,
    every thread) and VmRSS in KiB, summed over pids."""
    ticks = switches = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # utime + stime, and cutime + cstime: the shell's CPU is mostly its jq children's.
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                            switches += int(line.split()[1])
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return ticks, switches, rss


def disk_reads(pids):
    """Bytes the processes (every thread) made the kernel read from the disk:
    page cache misses, which make a round slower than its neighbours."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    if line.startswith("read_bytes:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


KDAMOND_PIDS = None


def kdamond_ticks():
    """CPU ticks of the kernel's DAMON threads, which compete with every
    alternative on this VM; 0 where there are none. The threads are found
    once: a scan of /proc with 20,000 sidecars takes a while."""
    global KDAMOND_PIDS
    if KDAMOND_PIDS is None:
        KDAMOND_PIDS = []
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().startswith("kdamond"):
                        KDAMOND_PIDS.append(pid)
            except OSError:
                pass
    total = 0
    for pid in KDAMOND_PIDS:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def wait_older_than(pids, age_s, timeout=60):
    """Waits until every pid has run for age_s seconds (from its start time in
    /proc), so a daemon's reload driver no longer holds it back by its
    start-up grace and the benchmark measures the ordinary reload path."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while True:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        youngest = age_s
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    started = int(f.read().rsplit(")", 1)[1].split()[19]) / hz
            except (OSError, IndexError, ValueError):
                continue  # gone: nothing left to wait for
            youngest = min(youngest, uptime - started)
        if youngest >= age_s:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sidecars still younger than {age_s} s after {timeout} s")
        time.sleep(min(age_s - youngest, 0.1))


def private_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(l.split()[1]) for l in f if l.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:
        return None


# --- system limits -------------------------------------------------------------

class Limits:
    """Raises fs.inotify.* and kernel.pid_max for the run (as root) and puts
    them back; raises RLIMIT_NOFILE for this process and its children."""

    SYSCTLS = ["fs/inotify/max_user_instances", "fs/inotify/max_user_watches",
               "fs/inotify/max_queued_events", "kernel/pid_max"]

    def __init__(self):
        self.saved = {}
        self.notes = []

    @staticmethod
    def read(name):
        with open(f"/proc/sys/{name}") as f:
            return int(f.read())

    def raise_to(self, name, want):
        cur = self.read(name)
        if cur >= want:
            return True
        try:
            with open(f"/proc/sys/{name}", "w") as f:
                f.write(str(want))
        except OSError as e:
            self.notes.append(f"cannot raise {name.replace('/', '.')} from {cur} to {want}: {e.strerror}")
            return False
        self.saved.setdefault(name, cur)
        return True

    def prepare(self, bottles):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        # Each pipelock sidecar holds an inotify instance; the daemon takes
        # about six watches per bottle, inotifywait one, each sidecar one.
        ok = self.raise_to("fs/inotify/max_user_instances", 2 * bottles + 1024)
        self.raise_to("fs/inotify/max_user_watches", 16 * bottles + 65536)
        self.raise_to("fs/inotify/max_queued_events", max(16384, 32 * bottles))
        self.raise_to("kernel/pid_max", max(32768, 3 * bottles + 8192))
        return ok

    def restore(self):
        for name, value in self.saved.items():
            try:
                with open(f"/proc/sys/{name}", "w") as f:
                    f.write(str(value))
            except OSError:
                pass
        self.saved.clear()


# --- bottles and sidecars ---------------------------------------------------------

class Bottles:
    """N bottles in STATE, each with one fragment, live files equal to it
    (already converged) and two real br-test-sidecar processes."""

    def __init__(self, env, name, n, prefix="b"):
        self.env = env
        self.root = os.path.join(env.tmp, name)
        self.state = os.path.join(self.root, "state")
        self.logs = os.path.join(self.root, "logs")
        self.stage = os.path.join(self.root, "stage")
        self.expect_pipelock = os.path.join(self.root, "pipelock.expected")
        self.slugs = [f"{prefix}{i:05d}" for i in range(n)]
        self.hosts = ["init.bench.example"]
        self.sidecars = []
        self.watching = False  # start_sidecars() says whether pipelock sidecars watch their file
        for d in (self.state, self.logs, self.stage):
            os.makedirs(d)
        pl = pipelock_bytes(self.hosts)
        for slug in self.slugs:
            d = os.path.join(self.state, slug)
            for sub in ("pipelock", "egress", "routes.d", "run"):
                os.makedirs(os.path.join(d, sub))
            frag = egress_bytes("init.bench.example", [f"/{slug}/init/"])
            write(os.path.join(d, "routes.d", FRAGMENT), frag)
            write(os.path.join(d, "egress", "egress_routes.yaml"), frag)
            write(os.path.join(d, "pipelock", "pipelock.yaml"), pl)
        write(self.expect_pipelock, pl)

    def path(self, slug, what):
        d = os.path.join(self.state, slug)
        return {"fragment": os.path.join(d, "routes.d", FRAGMENT),
                "egress": os.path.join(d, "egress", "egress_routes.yaml"),
                "pipelock": os.path.join(d, "pipelock", "pipelock.yaml")}[what]

    def log(self, slug, sidecar):
        return os.path.join(self.logs, f"{slug}.{sidecar}.log")

    def all_logs(self):
        return [self.log(s, c) for s in self.slugs for c in ("pipelock", "egress")]

    def start_sidecars(self, watch=True):
        self.watching = watch
        for slug in self.slugs:
            for mode, what in (("pipelock", "pipelock"), ("egress", "egress")):
                argv = [self.env.sidecar, "--mode", mode, "--file", self.path(slug, what),
                        "--log", self.log(slug, mode),
                        "--pidfile", os.path.join(self.state, slug, "run", f"{mode}.pid")]
                if mode == "pipelock" and not watch:
                    argv.append("--no-watch")
                self.sidecars.append(spawn(argv))
        pending = self.all_logs()
        deadline = time.monotonic() + 60 + len(pending) * 0.01
        while pending:
            dead = [p for p in self.sidecars if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{len(dead)} sidecar(s) exited at start (status {dead[0].returncode})")
            pending = [l for l in pending if not os.path.exists(l) or os.path.getsize(l) == 0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} sidecar(s) did not start, e.g. {pending[0]}")
            time.sleep(0.05)

    def stop_sidecars(self):
        for p in self.sidecars:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.sidecars:
            stop(p)
        self.sidecars = []
        self.watching = False

    def warm(self):
        """Reads every file of the state tree, so that each start-up finds
        the same page cache whichever alternative ran before it. On this VM
        the kernel's DAMON reclaim drops files untouched for half a minute,
        which made start-ups vary 2x with the time since the last round."""
        for top, _, files in os.walk(self.state):
            for f in files:
                try:
                    with open(os.path.join(top, f), "rb") as fh:
                        fh.read()
                except OSError:
                    pass  # the control socket, or a temp file renamed away meanwhile

    def snapshot(self):
        """What a start-up must leave alone: every sidecar log's size and
        every live file's inode and mtime."""
        snap = {}
        for l in self.all_logs():
            snap[l] = os.path.getsize(l)
        for slug in self.slugs:
            for what in ("pipelock", "egress"):
                st = os.stat(self.path(slug, what))
                snap[self.path(slug, what)] = (st.st_ino, st.st_mtime_ns)
        return snap

    def changed_since(self, snap):
        now = self.snapshot()
        logs = sum(1 for k, v in snap.items() if isinstance(v, int) and now[k] != v)
        files = sum(1 for k, v in snap.items() if isinstance(v, tuple) and now[k] != v)
        return logs, files

    def trim_pipelock(self):
        """Drops the hosts earlier changes added from every pipelock file but
        the last one (temp file and rename, as an operator would): hundreds of
        changes would otherwise measure a 200-host allowlist, not a change.
        Returns a LogWatch for the trimmed bytes, which each pipelock
        sidecar's own watcher loads after its debounce (None without one,
        or when nothing was trimmed: a sidecar skips a reload of the bytes
        it has)."""
        trimmed = len(self.hosts) > 1
        self.hosts = self.hosts[-1:]
        pl = pipelock_bytes(self.hosts)
        watch = None
        if self.watching and trimmed:
            watch = LogWatch([(self.log(slug, "pipelock"), sha(pl)) for slug in self.slugs])
        for slug in self.slugs:
            tmp = self.path(slug, "pipelock") + ".bench-trim"
            write(tmp, pl)
            os.rename(tmp, self.path(slug, "pipelock"))
        write(self.expect_pipelock, pl)
        return watch

    def resync_after_failure(self, alt, env):
        """After an alternative gave up half-way, converges every bottle with
        raw-limit, so the next alternative starts from converged bottles."""
        p = spawn([env.raw, "-j", "4", self.state, self.expect_pipelock], stdin=subprocess.PIPE)
        p.communicate("".join(s + "\n" for s in self.slugs).encode(), timeout=3600)
        CHILDREN.remove(p)

    def stage_change(self, tag, slugs=None):
        """Writes the next fragment of each slug beside the state (same file
        system) and returns [(staged, target)] plus the expected hashes
        [(log, sha)]: every egress and every pipelock sidecar must load new
        bytes, because the change adds a host."""
        host = f"{tag}.bench.example"
        self.hosts.append(host)
        pl = pipelock_bytes(self.hosts)
        write(self.expect_pipelock, pl)
        pl_sha = sha(pl)
        moves, expect = [], []
        for slug in slugs or self.slugs:
            frag = egress_bytes(host, [f"/{slug}/{tag}/"])
            staged = os.path.join(self.stage, f"{slug}.json")
            write(staged, frag)
            moves.append((staged, self.path(slug, "fragment")))
            expect.append((self.log(slug, "pipelock"), pl_sha))
            expect.append((self.log(slug, "egress"), sha(frag)))
        return moves, expect


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


class LogWatch:
    """Waits until each log has an "ok" line with its expected hash, written
    after the watch was made; returns each such line's time (ns)."""

    def __init__(self, expect):
        self.pending = collections.OrderedDict()
        for path, want in expect:
            self.pending[path] = [os.path.getsize(path), want, b""]
        self.seen = {}

    def poll(self, window):
        # Sidecars converge in roughly the order the change was made, so a
        # pass looks only at the first `window` pending logs: a full pass over
        # 20,000 logs every few ms would steal a core from what is measured.
        done = []
        for i, (path, entry) in enumerate(self.pending.items()):
            if i >= window:
                break
            offset, want, rest = entry
            size = os.path.getsize(path)
            if size <= offset:
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                data = rest + f.read(size - offset)
            entry[0] = size
            lines = data.split(b"\n")
            entry[2] = lines.pop()
            for line in lines:
                fields = line.split()
                if len(fields) >= 4 and fields[2].decode() == want and fields[3] == b"ok":
                    sec, nsec = fields[0].split(b".")
                    self.seen[path] = int(sec) * 1_000_000_000 + int(nsec)
                    done.append(path)
                    break
        for path in done:
            del self.pending[path]
        return not self.pending

    def wait(self, timeout, interval, window=256):
        deadline = time.monotonic() + timeout
        while not self.poll(window):
            if time.monotonic() > deadline:
                path = next(iter(self.pending))
                with open(path, "rb") as f:
                    tail = f.read().decode(errors="replace").strip().splitlines()[-3:]
                raise TimeoutError(f"{len(self.pending)} sidecar(s) did not load their new bytes within "
                                   f"{timeout:.0f} s; e.g. {path} (want {self.pending[path][1][:12]}): "
                                   + " | ".join(tail))
            time.sleep(interval)
        return self.seen


# --- the alternatives -------------------------------------------------------------

SIGNAL_RELOAD = """pipelock:
  settle_ms: {pl_settle}
  reload: {{driver: signal, pidfile: "{{state_dir}}/{{slug}}/run/pipelock.pid"{grace}{confirm}}}
egress:
  settle_ms: 0
  reload: {{driver: signal, pidfile: "{{state_dir}}/{{slug}}/run/egress.pid"{grace}}}
"""


def daemon_config(state, debounce_ms=None, pl_settle=150, grace=True, extra="", pl_confirm_log=None):
    """pl_confirm_log: pipelock's log (a path template); its reload then
    counts once the sidecar's own `SHA ok` line names the new bytes, and that
    confirmation ends the settle time (README, "Confirming a reload")."""
    text = f"state_dir: {state}\n"
    if debounce_ms is not None:
        text += f"debounce_ms: {debounce_ms}\n"
    confirm = f', confirm: {{log_file: "{pl_confirm_log}", match: " {{sha256}} ok"}}' if pl_confirm_log else ""
    text += SIGNAL_RELOAD.format(pl_settle=pl_settle, grace="" if grace else ", grace_ms: 0", confirm=confirm)
    return text + extra


class Daemon:
    kind = "daemon"

    def __init__(self, env, name, state, config_text, prefix=()):
        self.env, self.name, self.state, self.prefix = env, name, state, list(prefix)
        self.cfg = os.path.join(env.tmp, f"{name}.yaml")
        write(self.cfg, config_text.encode())
        self.proc = None
        self.runs = 0

    def start(self, timeout=600):
        """Starts it and returns the seconds until READY=1."""
        self.runs += 1
        sock_path = os.path.join(self.env.tmp, f"{self.name}.notify")
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        self.log_path = os.path.join(self.env.tmp, f"{self.name}.{self.runs}.log")
        logf = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = spawn(self.prefix + [getattr(self, "binary", self.env.bin), "--config", self.cfg, "run"], stdout=logf, stderr=logf,
                          env=env)
        logf.close()
        try:
            sock.settimeout(0.2)
            while True:
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"{self.name}: no READY=1 within {timeout} s")
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {tail(self.log_path)}")
                try:
                    msg = sock.recv(65536)
                except socket.timeout:
                    continue
                if b"READY=1" in msg.split(b"\n"):
                    return time.monotonic() - t0
        finally:
            sock.close()
            os.unlink(sock_path)

    def pid(self):
        """The daemon's pid: below the prefix (unshare) when there is one."""
        if not self.prefix:
            return self.proc.pid
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return int(f.read().split()[0])

    def pids(self):
        return [self.pid()]

    def notify(self, slugs):
        pass  # it watches

    def stop_quietly(self):
        if self.proc and self.proc.poll() is None:
            stop(self.proc, signal.SIGKILL)

    def overflows(self):
        with open(self.log_path, errors="replace") as f:
            return sum(1 for l in f if "queue overflow" in l)

    def stop(self):
        if self.prefix and self.proc.poll() is None:
            os.kill(self.pid(), signal.SIGTERM)  # unshare --fork passes no signal on
        rc = stop(self.proc, timeout=60)
        if rc != 0:
            raise RuntimeError(f"{self.name} exited with {rc} after SIGTERM: {tail(self.log_path)}")


class Shell:
    kind = "inotify-shell"

    def __init__(self, env, name, state, settle_s=0):
        self.env, self.name, self.state, self.settle = env, name, state, settle_s
        self.proc = None

    def start(self, timeout=3600):
        self.err_path = os.path.join(self.env.tmp, f"{self.name}.err")
        err = open(self.err_path, "ab")
        t0 = time.monotonic()
        self.proc = spawn(["bash", os.path.join(HERE, "inotify_shell.sh"), self.state, str(self.settle)],
                          stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        err.close()
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"inotify-shell did not start: {tail(self.err_path)}")
        return time.monotonic() - t0

    def pids(self):
        return descendants(self.proc.pid)

    def notify(self, slugs):
        pass

    def stop(self):
        stop(self.proc, group=True)
        self.proc.stdout.close()

    def stop_quietly(self):
        if self.proc:
            self.stop()


class Raw:
    """raw-limit has no watcher: it is told which slugs changed, through its
    stdin, right after the rename (what a perfect watcher would do)."""
    kind = "raw-limit"

    def __init__(self, env, name, bottles, workers):
        self.env, self.name, self.bottles, self.workers = env, name, bottles, workers
        self.proc = None

    def _spawn(self):
        self.err_path = os.path.join(self.env.tmp, f"{self.name}.err")
        err = open(self.err_path, "ab")
        p = spawn([self.env.raw, "-j", str(self.workers), self.bottles.state, self.bottles.expect_pipelock],
                  stdin=subprocess.PIPE, stderr=err)
        err.close()
        return p

    def start(self, timeout=3600):
        """A full pass over every (already converged) slug: its start-up."""
        t0 = time.monotonic()
        p = self._spawn()
        p.stdin.write("".join(s + "\n" for s in self.bottles.slugs).encode())
        p.stdin.close()
        p.wait(timeout)
        elapsed = time.monotonic() - t0
        CHILDREN.remove(p)
        if p.returncode != 0:
            raise RuntimeError(f"raw-limit failed: {tail(self.err_path)}")
        self.proc = self._spawn()  # waits on stdin for the change
        return elapsed

    def pids(self):
        return [self.proc.pid]

    def notify(self, slugs):
        self.proc.stdin.write("".join(s + "\n" for s in slugs).encode())
        self.proc.stdin.flush()

    def stop_quietly(self):
        if self.proc and self.proc.poll() is None:
            stop(self.proc, signal.SIGKILL)

    def stop(self):
        self.proc.stdin.close()
        rc = self.proc.wait(600)
        CHILDREN.remove(self.proc)
        if rc != 0:
            raise RuntimeError(f"raw-limit failed: {tail(self.err_path)}")


def tail(path, n=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-n:])
    except OSError:
        return ""


# --- statistics and the table -------------------------------------------------------

def percentile(values, p):
    """Nearest rank: the smallest value with at least p% of values at or below it."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))
    return v[int(k)]


def median(values):
    return statistics.median(values) if values else None


def fmt(v, unit):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if unit == "ms":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"
    if unit == "s":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if unit == "MB":
        return f"{v:.1f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "-"
    return f"{a / b:.2f}x"


class Table:
    COLS = ["daemon", "inotify-shell", "raw-limit"]

    def __init__(self):
        self.rows = []

    def add(self, scenario, metric, unit, values, target="", note=""):
        self.rows.append(dict(scenario=scenario, metric=metric, unit=unit, values=values,
                              target=target, note=note))

    def render(self):
        head = ["scenario", "metric", "daemon", "inotify-shell", "raw-limit", "shell/daemon", "daemon/raw",
                "target"]
        lines = []
        for r in self.rows:
            v = r["values"]
            if isinstance(v, str):
                lines.append([r["scenario"], v, "", "", "", "", "", r["target"]])
                continue
            cells = [fmt(v.get(c), r["unit"]) for c in self.COLS]
            lines.append([r["scenario"], f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"],
                          *cells, ratio(v.get("inotify-shell"), v.get("daemon")),
                          ratio(v.get("daemon"), v.get("raw-limit")), r["target"]])
        spanning = [r[2:7] == ["", "", "", "", ""] for r in lines]
        widths = [max(len(str(x[i])) for x, span in zip(lines + [head], spanning + [False]) if not span)
                  for i in range(len(head))]
        out = []
        for i, (row, span) in enumerate(zip([head] + lines, [False] + spanning)):
            if span:
                out.append(f"{row[0]:<{widths[0]}}  {row[1]}")
                continue
            out.append("  ".join(f"{str(c):<{widths[j]}}" if j < 2 or j == 7 else f"{str(c):>{widths[j]}}"
                                 for j, c in enumerate(row)).rstrip())
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)


# --- scenarios ---------------------------------------------------------------------

def scenario_latency(env, table, results, changes):
    """1: one fragment renamed into place -> the egress sidecar logs its hash."""
    log(f"scenario 1: latency, {changes} changes per alternative, interleaved")
    alts = []

    def setup(name, make):
        b = Bottles(env, f"lat-{name}", 1)
        b.start_sidecars()
        alt = make(b)
        alt.start()
        alts.append((name, b, alt))

    setup("daemon", lambda b: Daemon(env, "lat-daemon", b.state, daemon_config(b.state, 0, 0, grace=False)))
    setup("daemon-defaults", lambda b: Daemon(env, "lat-daemon-defaults", b.state, daemon_config(b.state)))
    # The defaults, with pipelock's load confirmed from its log: the settle
    # time ends at the confirmation instead of running its 150 ms.
    setup("daemon-confirmed", lambda b: Daemon(env, "lat-daemon-confirmed", b.state,
                                               daemon_config(b.state, pl_confirm_log=os.path.join(
                                                   b.logs, "{slug}.pipelock.log"))))
    setup("inotify-shell", lambda b: Shell(env, "lat-shell", b.state, 0))
    setup("raw-limit", lambda b: Raw(env, "lat-raw", b, 1))
    wait_older_than([sc.pid for _, b, _ in alts for sc in b.sidecars], GRACE_S)
    lat = {name: [] for name, _, _ in alts}
    pl_lat = {name: [] for name, _, _ in alts}  # pipelock loaded: where a slow change lost its time
    for i in range(changes):
        k = i % len(alts)
        for name, b, alt in alts[k:] + alts[:k]:
            moves, expect = b.stage_change(f"l{i}")
            watch = LogWatch(expect)
            t0 = time.time_ns()
            os.rename(*moves[0])
            alt.notify(b.slugs)
            # Times come from the sidecars' log lines, so looking every 5 ms
            # loses no precision and leaves the CPUs to what is measured.
            seen = watch.wait(30, 0.005)
            lat[name].append((seen[b.log(b.slugs[0], "egress")] - t0) / 1e6)
            pl_lat[name].append((seen[b.log(b.slugs[0], "pipelock")] - t0) / 1e6)
            # The next change starts once this one's aftermath is over: the
            # pipelock sidecar's watcher reloads the trimmed file after its
            # 100 ms debounce, and would otherwise land in the next
            # alternative's change.
            trimmed = b.trim_pipelock()
            if trimmed:
                trimmed.wait(30, 0.01)
    for name, b, alt in alts:
        alt.stop()
        b.stop_sidecars()
    results["latency"] = {name: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99),
                                 "max_ms": max(v), "n": len(v), "egress_ms": v, "pipelock_ms": pl_lat[name]}
                          for name, v in lat.items()}
    main = {n: lat[n] for n in ("daemon", "inotify-shell", "raw-limit")}
    p99 = {n: percentile(v, 99) for n, v in main.items()}
    p50 = {n: percentile(v, 50) for n, v in main.items()}
    met = p99["daemon"] <= 5 and p99["inotify-shell"] >= 5 * p99["daemon"]
    table.add("1 latency, settle/debounce 0", f"p50 of {changes}", "ms", p50)
    table.add("1 latency, settle/debounce 0", f"p99 of {changes}", "ms", p99,
              f"p99 <= 5 ms, >= 5x below shell: {'met' if met else 'MISSED'}")
    d = lat["daemon-defaults"]
    table.add("1 latency, defaults", f"p50 of {changes}", "ms", {"daemon": percentile(d, 50)},
              "debounce 20 ms, pipelock settle 150 ms")
    table.add("1 latency, defaults", f"p99 of {changes}", "ms", {"daemon": percentile(d, 99)})
    c = lat["daemon-confirmed"]
    table.add("1 latency, defaults, confirmed", f"p50 of {changes}", "ms", {"daemon": percentile(c, 50)},
              "as defaults, pipelock's load confirmed from its log")
    table.add("1 latency, defaults, confirmed", f"p99 of {changes}", "ms", {"daemon": percentile(c, 99)})
    results["latency"]["target_met"] = met


def settle_down(pids, quiet_s=1.0, timeout=60):
    """Waits until pids used no CPU for quiet_s (the daemon still converging
    the events of its own writes, a sidecar's watcher still debouncing)."""
    deadline = time.monotonic() + timeout
    last = proc_sample(pids)[0]
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = proc_sample(pids)[0]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def cpu_busy_idle():
    """Jiffies the machine spent busy and idle (iowait counts as idle), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, idle


def wait_machine_quiet(busy_max=0.35, window_s=1.0, timeout=20):
    """Waits until the whole machine was at most busy_max busy for window_s:
    what the harness itself set off (20,000 sidecars starting, the previous
    alternative's last reloads, its exit freeing 40,000 inotify marks) must
    not land in the next alternative's start-up. Not 0: on the VM these
    figures come from, the kernel's DAMON reclaim thread (kdamond) keeps half
    a CPU busy while 20,000 sidecars exist. Returns False on timeout (a
    machine shared with other work), which the log then says."""
    deadline = time.monotonic() + timeout
    samples = [(time.monotonic(), *cpu_busy_idle())]
    while time.monotonic() < deadline:
        time.sleep(0.25)
        samples.append((time.monotonic(), *cpu_busy_idle()))
        while len(samples) > 2 and samples[-1][0] - samples[1][0] >= window_s:
            samples.pop(0)
        t0, b0, i0 = samples[0]
        t1, b1, i1 = samples[-1]
        if t1 - t0 >= window_s and (b1 - b0) <= busy_max * ((b1 - b0) + (i1 - i0)):
            return True
    return False


def measure_idle(alt, idle_s):
    settle_down(alt.pids())
    pids = alt.pids()
    t0, s0 = time.monotonic(), proc_sample(pids)
    time.sleep(idle_s)
    s1 = proc_sample(pids)
    elapsed = time.monotonic() - t0
    hz = os.sysconf("SC_CLK_TCK")
    return {"cpu_s": (s1[0] - s0[0]) / hz, "wakeups": s1[1] - s0[1], "rss_mb": s1[2] / 1024,
            "seconds": elapsed, "processes": len(pids)}


def scenario_bulk(env, table, results, n, rounds, shell_rounds, idle_s, workers, with_defaults):
    """2 (bulk), 3 (start-up) and 4 (idle) at n bottles: each round starts
    every alternative on the converged bottles (start-up), changes every
    bottle at once (bulk), stops it; the last round measures idle first."""
    log(f"scenarios 2-4 at {n} bottles ({2 * n} sidecars), {rounds} round(s)")
    b = Bottles(env, f"bulk{n}", n)
    watch = env.limits.prepare(n)
    if not watch:
        env.notes.append(f"{n} bottles: pipelock sidecars run with --no-watch (inotify instance limit)")
    free_kib = meminfo("MemAvailable")
    need_kib = 2 * n * 400 + 512 * 1024
    if free_kib < need_kib:
        msg = f"not run: {n} bottles need about {need_kib // 1024} MiB, {free_kib // 1024} MiB available"
        for s in ("2 bulk", "3 start-up", "4 idle"):
            table.add(f"{s} {n}", msg, "", msg)
        return
    t = time.monotonic()
    b.start_sidecars(watch)
    log(f"  {2 * n} sidecars started in {time.monotonic() - t:.1f} s; one holds "
        f"{private_kib(b.sidecars[-1].pid)} KiB private (egress), {private_kib(b.sidecars[-2].pid)} KiB (pipelock)")
    wait_older_than([sc.pid for sc in b.sidecars], GRACE_S)
    alts = [Daemon(env, f"bulk{n}-daemon", b.state, daemon_config(b.state, pl_settle=0)),
            Shell(env, f"bulk{n}-shell", b.state, 0),
            Raw(env, f"bulk{n}-raw", b, workers)]
    if with_defaults:
        dflt = Daemon(env, f"bulk{n}-daemon-defaults", b.state, daemon_config(b.state))
        dflt.kind = "daemon-defaults"
        alts.append(dflt)
    if env.compare:
        other = Daemon(env, f"bulk{n}-daemon-b", b.state, daemon_config(b.state, pl_settle=0))
        other.kind, other.binary = "daemon-b", env.compare
        alts.append(other)
    alts = [a for a in alts if a.kind in env.alts or a.kind == "daemon-b" or (a.kind == "daemon-defaults" and "daemon" in env.alts)]
    res = {a.kind: {"startup_s": [], "startup_dirty": [], "bulk_s": [], "bulk_p50_s": []} for a in alts}
    idle = {}
    failed = {}
    timeout = 120 + n * 0.2
    for r in range(rounds):
        k = r % len(alts)
        for alt in alts[k:] + alts[:k]:
            name = alt.kind
            if name == "daemon-defaults" and r > 0:
                continue  # one round: it is bound by its settle sleeps, not by anything measured here
            if name == "inotify-shell" and r >= shell_rounds:
                continue
            if name in failed:
                continue
            snap = b.snapshot()
            b.warm()
            # The previous round's writes (20,000 sidecar logs) go to the disk
            # now, not during this start-up.
            os.sync()
            if not wait_machine_quiet():
                log(f"  round {r + 1} {name}: the machine did not become quiet within 20 s; starting anyway")
            damon0 = kdamond_ticks()
            try:
                up = alt.start(timeout)
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as e:
                log(f"  round {r + 1} {name}: did not start: {e}")
                failed[name] = f"did not start: {e}"
                alt.stop_quietly()
                continue
            # What a slow start-up had against it: page cache misses, kdamond.
            up_reads = disk_reads(alt.pids()) / 1e6
            up_damon = (kdamond_ticks() - damon0) / os.sysconf("SC_CLK_TCK")
            time.sleep(0.5)
            logs, files = b.changed_since(snap)
            res[name]["startup_s"].append(up)
            res[name].setdefault("startup_disk_read_mb", []).append(up_reads)
            res[name].setdefault("startup_kdamond_cpu_s", []).append(up_damon)
            res[name]["startup_dirty"].append(logs + files)
            if logs or files:
                log(f"  {name}: start-up touched {logs} sidecar log(s) and {files} live file(s)")
            moves, expect = b.stage_change(f"r{r}{name.replace('-', '')}")
            settle_down([p.pid for p in b.sidecars[-2:]] + alt.pids(), 0.5)
            watch_ = LogWatch(expect)
            cpu0, reads0, damon0 = proc_sample(alt.pids())[0], disk_reads(alt.pids()), kdamond_ticks()
            t0 = time.time_ns()
            for staged, target in moves:
                os.rename(staged, target)
            alt.notify(b.slugs)
            try:
                seen = watch_.wait(timeout, 0.05)
            except TimeoutError as e:
                # An alternative that hangs (the shell once did) costs its row, not the run.
                log(f"  round {r + 1} {name}: {e}")
                failed[name] = str(e).split(";")[0]
                alt.stop_quietly()
                b.resync_after_failure(alt, env)
                continue
            times = sorted((t - t0) / 1e9 for t in seen.values())
            damon = (kdamond_ticks() - damon0) / os.sysconf("SC_CLK_TCK")
            settle_down(alt.pids(), 0.5)
            cpu = (proc_sample(alt.pids())[0] - cpu0) / os.sysconf("SC_CLK_TCK")
            reads = (disk_reads(alt.pids()) - reads0) / 1e6
            res[name]["bulk_s"].append(times[-1])
            res[name]["bulk_p50_s"].append(percentile(times, 50))
            res[name].setdefault("bulk_cpu_s", []).append(cpu)
            res[name].setdefault("bulk_disk_read_mb", []).append(reads)
            res[name].setdefault("bulk_kdamond_cpu_s", []).append(damon)
            extra = f", {alt.overflows()} queue overflow(s)" if isinstance(alt, Daemon) else ""
            log(f"  round {r + 1} {name}: start-up {up:.3f} s ({up_reads:.1f} MB read, kdamond {up_damon:.2f} s), "
                f"bulk {times[-1]:.3f} s "
                f"(CPU {cpu:.2f} s until quiet, {reads:.1f} MB read from the disk; kdamond CPU {damon:.2f} s "
                f"meanwhile){extra}")
            last = shell_rounds if name == "inotify-shell" else rounds
            if r == last - 1 and name in ("daemon", "inotify-shell", "raw-limit", "daemon-b"):
                idle[name] = measure_idle(alt, idle_s)
                log(f"  idle {name}: {idle[name]}")
            alt.stop()
            settle_down([p.pid for p in b.sidecars[:2]], 0.5)
    # One start-up each from empty caches, as after a boot: every file and
    # directory inode is read from the disk.
    cold = {}
    for alt in alts:
        if alt.kind in failed or alt.kind == "daemon-defaults":
            continue
        if not drop_caches():
            env.notes.append("start-up from empty caches not run: writing /proc/sys/vm/drop_caches needs root")
            break
        try:
            cold[alt.kind] = alt.start(timeout)
            log(f"  {alt.kind}: start-up from empty caches {cold[alt.kind]:.3f} s")
            alt.stop()
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as e:
            log(f"  {alt.kind}: start-up from empty caches failed: {e}")
            alt.stop_quietly()
    b.stop_sidecars()
    results[f"bulk{n}"] = {"alternatives": res, "idle": idle, "startup_cold_s": cold}
    results[f"bulk{n}"]["failed"] = failed
    for name, why in failed.items():
        env.notes.append(f"{n} bottles: {name} failed: {why}")
    cols = [c for c in ("daemon", "inotify-shell", "raw-limit") if c in res]
    bulk = {c: median(res[c]["bulk_s"]) if res[c]["bulk_s"] else "failed" for c in cols}
    target = ""
    if n >= 10000 and all(isinstance(bulk.get(c), float) for c in ("daemon", "raw-limit")):
        met = bulk["daemon"] <= 1.5 * bulk["raw-limit"]
        target = f"<= 1.5x raw-limit: {'met' if met else 'MISSED'}"
        results[f"bulk{n}"]["target_met"] = met
    of = f"median of {rounds}" + (f" (shell: {shell_rounds})" if shell_rounds != rounds else "")
    table.add(f"2 bulk {n}", f"all {2 * n} loaded, {of}", "s", bulk, target)
    if with_defaults:
        table.add(f"2 bulk {n}, defaults", "all loaded, 1 round", "s",
                  {"daemon": median(res["daemon-defaults"]["bulk_s"])}, "pipelock settle 150 ms per bottle")
    up = {c: median(res[c]["startup_s"]) if res[c]["startup_s"] else "failed" for c in cols}
    dirty = sum(res["daemon"]["startup_dirty"]) if "daemon" in res else 0
    target = ""
    if n >= 10000 and isinstance(up.get("daemon"), float):
        met = up["daemon"] <= 1 and dirty == 0
        target = f"<= 1 s, no write or signal: {'met' if met else 'MISSED'}"
        results[f"bulk{n}"]["startup_target_met"] = met
    table.add(f"3 start-up {n}", f"to READY, warm caches, {of}", "s", up,
              target or ("no write or signal: " + ("met" if dirty == 0 else "MISSED")))
    if cold:
        table.add(f"3 start-up {n}", "to READY, empty caches, 1 run", "s",
                  {c: cold[c] for c in cols if c in cold}, "as after a boot; no target")
    if idle:
        table.add(f"4 idle {n}", f"CPU over {idle_s:g} s", "s", {c: idle[c]["cpu_s"] for c in idle})
        wake = {c: idle[c]["wakeups"] for c in idle}
        table.add(f"4 idle {n}", f"wakeups over {idle_s:g} s", "", wake,
                  "none beyond the resync timer: " + ("met" if wake.get("daemon") == 0 else "MISSED")
                  if "daemon" in wake else "")
        rss = {c: idle[c]["rss_mb"] for c in idle}
        target = ""
        if n >= 10000:
            met = rss.get("daemon", 99) <= 20
            target = f"<= 20 MB: {'met' if met else 'MISSED'}"
        table.add(f"4 idle {n}", "VmRSS", "MB", rss, target)


def drop_caches():
    """Writes back and then drops the page, dentry and inode caches (root
    only). Returns False when that is not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# --- 5: docker ------------------------------------------------------------------------

DOCKER_SOCK = "/var/run/docker.sock"


def docker_api(method, path, timeout=10):
    """One request to the Docker Engine API; returns (status, body bytes)."""
    import http.client

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(DOCKER_SOCK)

    c = Conn("localhost", timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def docker_unavailable():
    """Why the docker scenarios cannot run, or None."""
    try:
        status, _ = docker_api("GET", "/_ping", 3)
        if status != 200:
            raise OSError(f"HTTP {status}")
    except OSError as e:
        return f"no Docker engine answers on {DOCKER_SOCK} ({e})"
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    return None


def docker_image(env):
    """An image holding only br-test-sidecar and the libraries it loads,
    imported from the host's files: no registry is involved."""
    tag = f"br-bench-sidecar:{os.getpid()}"  # per run: a smoke test may run beside a full run
    root = os.path.join(env.tmp, "docker-rootfs")
    for d in ("tmp", "cfg", "logs"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy(env.sidecar, os.path.join(root, "br-test-sidecar"))
    ldd = subprocess.run(["ldd", env.sidecar], capture_output=True, text=True, check=True).stdout
    for word in ldd.split():
        if word.startswith("/"):
            dest = os.path.join(root, word.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(os.path.realpath(word), dest)
    tar = os.path.join(env.tmp, "docker-rootfs.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    subprocess.run(["docker", "import", tar, tag], check=True, capture_output=True)
    return tag


def scenario_docker(env, table, results, changes):
    """5: one reload through each delivery path of the daemon's docker driver
    (kill(2) of the container's host pid through a pidfd; the Engine API,
    which it uses when it cannot see that pid: here the daemon runs in a pid
    namespace of its own) against `docker kill --signal HUP` by hand."""
    log("scenario 5: docker")

    def not_run(reason):
        table.add("5 docker", f"not run: {reason}", "", f"not run: {reason}")
        results["docker"] = {"not_run": reason}

    why = docker_unavailable()
    if why:
        return not_run(why)
    # One bottle per alternative, each in its own state dir: a daemon would
    # revert what is done by hand to a bottle it converges.
    # Slugs (and so container names) carry this run's pid, for the same reason.
    run = os.getpid()
    bottles = {"host pid": Bottles(env, "docker-pid", 1, f"bp{run}-"),
               "Engine API": Bottles(env, "docker-api", 1, f"ba{run}-"),
               "docker kill CLI": Bottles(env, "docker-cli", 1, f"bc{run}-")}
    containers, daemons, image = [], [], None
    try:
        image = docker_image(env)
        for b in bottles.values():
            slug = b.slugs[0]
            for mode in ("pipelock", "egress"):
                name = f"{slug}-{mode}-1"
                subprocess.run(["docker", "rm", "-f", name], capture_output=True)
                subprocess.run(["docker", "run", "-d", "--name", name,
                                "-v", f"{os.path.dirname(b.path(slug, mode))}:/cfg",
                                "-v", f"{b.logs}:/logs", image, "/br-test-sidecar", "--mode", mode,
                                "--file", f"/cfg/{os.path.basename(b.path(slug, mode))}",
                                "--log", f"/logs/{slug}.{mode}.log",
                                "--pidfile", f"/tmp/{mode}.pid"], check=True, capture_output=True)
                containers.append(name)
        deadline = time.monotonic() + 30
        while not all(os.path.exists(b.log(b.slugs[0], m)) for b in bottles.values() for m in ("pipelock", "egress")):
            if time.monotonic() > deadline:
                raise RuntimeError("the sidecar containers wrote no start line")
            time.sleep(0.05)
        pids = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", *containers], check=True,
                              capture_output=True, text=True).stdout.split()
        wait_older_than([int(p) for p in pids], GRACE_S)

        def config(b):
            return f"state_dir: {b.state}\ndebounce_ms: 0\npipelock:\n  settle_ms: 0\negress:\n  settle_ms: 0\n"

        # Does the driver work? One converge through it before measuring.
        b = bottles["host pid"]
        cfg = os.path.join(env.tmp, "docker-probe.yaml")
        write(cfg, config(b).encode())
        moves, expect = b.stage_change("probe")
        probe_watch = LogWatch(expect)
        os.rename(*moves[0])
        probe = subprocess.run([env.bin, "--config", cfg, "once", b.slugs[0]], capture_output=True, text=True)
        if probe.returncode != 0:
            lines = (probe.stdout + probe.stderr).strip().splitlines()
            return not_run("docker driver: " + (lines[0] if lines else f"`once` exited {probe.returncode}"))
        try:
            probe_watch.wait(10, 0.01)
        except TimeoutError as e:
            return not_run(f"docker driver: the sidecars did not reload ({e})")

        def watched(b):
            def stage(i):
                moves, expect = b.stage_change(f"d{i}")

                def fire():
                    t0 = time.time_ns()
                    os.rename(*moves[0])
                    return t0
                return expect, fire
            return stage

        def by_hand(b):
            slug = b.slugs[0]

            def stage(i):
                moves, expect = b.stage_change(f"d{i}")
                frag = open(moves[0][0], "rb").read()
                pl = open(b.expect_pipelock, "rb").read()

                def fire():
                    # What an operator does: write each file (as raw-limit
                    # does), then `docker kill --signal HUP` its container.
                    t0 = time.time_ns()
                    for what, data in (("pipelock", pl), ("egress", frag)):
                        tmp = os.path.join(os.path.dirname(b.path(slug, what)), ".bench-tmp")
                        with open(tmp, "wb") as f:
                            f.write(data)
                            f.flush()
                            os.fsync(f.fileno())
                        os.rename(tmp, b.path(slug, what))
                        subprocess.run(["docker", "kill", "--signal", "HUP", f"{slug}-{what}-1"], check=True,
                                       capture_output=True)
                    os.rename(*moves[0])  # the fragment says what the live files now hold
                    return t0
                return expect, fire
            return stage

        alts = []
        for name, prefix in (("host pid", []), ("Engine API", ["unshare", "--pid", "--fork", "--mount-proc",
                                                                "--kill-child=SIGTERM"])):
            b = bottles[name]
            d = Daemon(env, f"docker-{name.split()[0].lower()}", b.state, config(b), prefix)
            d.start()
            daemons.append(d)
            alts.append((name, watched(b)))
        alts.append(("docker kill CLI", by_hand(bottles["docker kill CLI"])))
        for b in bottles.values():
            b.watching = True  # the sidecars in the containers watch their pipelock file
        lat = {name: [] for name, _ in alts}
        for i in range(changes):
            k = i % len(alts)
            for name, stage in alts[k:] + alts[:k]:
                expect, fire = stage(i)
                watch = LogWatch(expect)
                t0 = fire()
                seen = watch.wait(30, 0.005)
                egress_log = next(p for p in seen if p.endswith(".egress.log"))
                lat[name].append((seen[egress_log] - t0) / 1e6)
                # As in scenario 1: the next change starts once this one's
                # pipelock sidecar has loaded the trimmed file.
                trimmed = bottles[name].trim_pipelock()
                if trimmed:
                    trimmed.wait(30, 0.01)
        for d in daemons:
            d.stop()
        # Which path each daemon took, in its own words (the audit log).
        how = {}
        for name in ("host pid", "Engine API"):
            with open(os.path.join(bottles[name].state, ".reconciler", "audit.jsonl")) as f:
                details = [json.loads(l).get("reload_detail", "") for l in f if l.strip()]
            how[name] = sorted({("host pid" if "pidfd" in d or "host pid" in d else
                                 "Engine API" if "API" in d or "engine" in d.lower() else d[:40])
                                for d in details if d})
        results["docker"] = {name: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "n": len(v)}
                             for name, v in lat.items()}
        results["docker"]["paths_seen"] = how
        cli = percentile(lat["docker kill CLI"], 50)
        for name in ("host pid", "Engine API"):
            p50 = percentile(lat[name], 50)
            table.add(f"5 docker, {name}",
                      f"p50 {p50:.1f} ms, p99 {percentile(lat[name], 99):.1f} ms over {changes} changes; "
                      f"docker kill --signal HUP by hand: p50 {cli:.1f} ms ({cli / p50:.1f}x); "
                      f"path in the audit log: {', '.join(how[name]) or '?'}", "",
                      f"p50 {p50:.1f} ms, p99 {percentile(lat[name], 99):.1f} ms over {changes} changes; "
                      f"docker kill --signal HUP by hand: p50 {cli:.1f} ms ({cli / p50:.1f}x); "
                      f"path in the audit log: {', '.join(how[name]) or '?'}")
    except (OSError, RuntimeError, subprocess.CalledProcessError, TimeoutError) as e:
        not_run(str(e))
    finally:
        stop_daemons(daemons)
        for name in containers:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if image:
            subprocess.run(["docker", "rmi", image], capture_output=True)


# --- 6: approval to allowed request ------------------------------------------------------

EGRESS_DIR = os.path.join(HERE, "..", "..", "contrib", "egress")
UPSTREAM = os.path.join(HERE, "..", "system", "egress_upstream.py")


def egress_python():
    """(mitmdump, the python of its #! line, None): that python has
    mitmproxy's dependencies and runs the helpers here; or (None, None, why
    scenario 6 cannot run)."""
    mitmdump = shutil.which("mitmdump")
    if not mitmdump:
        return None, None, "mitmdump is not installed (contrib/setup.sh installs mitmproxy)"
    mitmdump = os.path.realpath(mitmdump)
    with open(mitmdump, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    py = first[2:].split()[0] if first.startswith("#!") else ""
    if not py.startswith("/") or not os.access(py, os.X_OK):
        return None, None, f"{mitmdump} does not start with the #! line of an interpreter"
    return mitmdump, py, None


def s6_image(env, mitmdump, py):
    """One image for both sidecars of scenario 6, imported from host files (no
    registry): br-test-sidecar and contrib/egress (root-owned and read-only,
    as the launcher demands) in the image; the host's /usr (python3,
    mitmproxy, cat, the libraries) bind-mounted read-only at run time.
    Returns (tag, the docker run arguments of those mounts) or raises
    RuntimeError."""
    mounts, shared = ["-v", "/usr:/usr:ro"], ["/usr"]
    root = os.path.join(env.tmp, "s6-rootfs")
    for d in ("usr", "etc", "tmp", "proc", "sys", "dev", "cfg", "logs", "mitm", "egress"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    for d in ("bin", "lib", "lib64", "sbin"):
        host = "/" + d
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(root, d))  # merged /usr: bin -> usr/bin
        elif os.path.isdir(host):
            mounts += ["-v", f"{host}:{host}:ro"]
            shared.append(host)
    for path in (mitmdump, py):
        if not any(os.path.realpath(path).startswith(m + "/") for m in shared):
            raise RuntimeError(f"{path} is outside {', '.join(shared)}, which the containers get from the host")
    for f in ("nsswitch.conf", "passwd", "group"):  # nsswitch: /etc/hosts (--add-host) before DNS
        if os.path.exists("/etc/" + f):
            shutil.copy("/etc/" + f, os.path.join(root, "etc", f))
    if os.path.isdir("/etc/ssl"):
        mounts += ["-v", "/etc/ssl:/etc/ssl:ro"]  # certifi's bundle on Debian; mitmproxy loads it at start
    shutil.copy(env.sidecar, os.path.join(root, "br-test-sidecar"))
    for f, mode in (("egress-proxy", 0o555), ("egress_addon.py", 0o444)):
        shutil.copy(os.path.join(EGRESS_DIR, f), os.path.join(root, "egress", f))
        os.chmod(os.path.join(root, "egress", f), mode)
    tar = os.path.join(env.tmp, "s6-rootfs.tar")
    subprocess.run(["tar", "--owner=0", "--group=0", "--numeric-owner", "-C", root, "-cf", tar, "."], check=True)
    tag = f"br-bench-s6:{os.getpid()}"
    subprocess.run(["docker", "import", tar, tag], check=True, capture_output=True)
    return tag, mounts


def write_durable(path, data):
    """The daemon's way (and raw_limit.c's): temp file, write, fsync, rename,
    fsync of the directory. Returns an O_PATH descriptor on the replaced
    file, to close after the signals (freeing its blocks waits for a discard
    on this VM's disk; README, "rename() no longer frees")."""
    d = os.path.dirname(path)
    tmp = os.path.join(d, ".bench-s6.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    held = os.open(path, os.O_PATH | os.O_CLOEXEC)
    os.rename(tmp, path)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return held


def write_replace(path, data):
    """What a script does: temp file in the same directory, rename over the
    live file; no fsync."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def splice_allowlist(text, host):
    """The old tooling's widening of pipelock's api_allowlist, on the text (a
    YAML library would drop the file's comments): the host goes after the
    list's last item."""
    lines = text.splitlines(keepends=True)
    try:
        at = next(i for i, l in enumerate(lines) if l.split("#")[0].rstrip() == "api_allowlist:")
    except StopIteration:
        raise ValueError("no api_allowlist: block in pipelock's file")
    end = at + 1
    while end < len(lines) and lines[end].startswith("  - "):
        end += 1
    lines.insert(end, f"  - {host}\n")
    return "".join(lines)


def validate_routes(doc):
    """The old tooling's check of the live routes and the new route: the
    egress format's shape, hosts without wildcards, paths from /."""
    if not isinstance(doc, dict) or not isinstance(doc.get("routes"), list):
        raise ValueError("live egress routes: no routes list")
    seen = set()
    for r in doc["routes"]:
        host = r.get("host") if isinstance(r, dict) else None
        if not isinstance(host, str) or not host or "*" in host or host in seen:
            raise ValueError(f"live egress routes: bad or repeated host {host!r}")
        seen.add(host)
        paths = r.get("path_allowlist", ["/"])
        if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
            raise ValueError(f"live egress routes: bad path_allowlist of {host}")


class Poller:
    """egress_poll.py against one proxy: asks whether a URL is allowed yet."""

    def __init__(self, py, ip, port):
        self.proc = spawn([py, os.path.join(HERE, "egress_poll.py"), ip, str(port)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, bufsize=0)

    def send(self, url, timeout_s):
        self.proc.stdin.write((json.dumps({"url": url, "timeout_s": timeout_s}) + "\n").encode())
        self.proc.stdin.flush()

    def read(self, timeout):
        # Unbuffered (bufsize=0): select() then sees every byte the poller wrote.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"the egress poller did not answer within {timeout} s "
                               f"(exit status {self.proc.poll()})")
        return json.loads(line)

    def stop(self):
        self.proc.stdin.close()
        stop(self.proc, timeout=5)


class UpstreamRecord:
    """egress_upstream.py's record: when a request for each host first
    reached the upstream."""

    def __init__(self, path):
        self.path, self.offset, self.first = path, 0, {}

    def first_seen(self, host_port):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            seen = json.loads(line)
            host = next((v for k, v in seen["headers"] if k.lower() == "host"), "")
            self.first.setdefault(host, seen["time_ns"])
        return self.first.get(host_port)


def docker_run(name, argv, what):
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    r = subprocess.run(["docker", "run", "-d", "--name", name, *argv], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"docker run of the {what} container {name} failed: {r.stderr.strip()}")


def wait_until(what, cond, timeout=60, interval=0.05):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout} s")
        time.sleep(interval)


def scenario_approval(env, table, results, changes):
    """6: one approved route, until a request through the real egress proxy
    (contrib/egress: mitmdump and the addon, in a container) is allowed, by
    the daemon with the docker driver, by the old tooling's imperative path
    (docker exec cat, docker kill --signal HUP) and by the raw limit."""
    log(f"scenario 6: approval to allowed request, {changes} changes per alternative, interleaved")
    row = "6 approval to allowed request"

    def not_run(reason):
        table.add(row, f"not run: {reason}", "", f"not run: {reason}")
        results["approval"] = {"not_run": reason}
        log(f"  not run: {reason}")

    why = docker_unavailable()
    if why:
        return not_run(why)
    mitmdump, py, why = egress_python()
    if why:
        return not_run(why)
    run = os.getpid()
    # key, label, kind, daemon config (None: the harness does it)
    defs = [("old", "old tooling (docker exec, docker kill)", "old", None),
            ("dflt", "daemon, defaults", "daemon", ""),
            ("conf", "daemon, defaults, pipelock confirmed", "daemon",
             "pipelock:\n  reload: {driver: docker, confirm: {}}\n"),
            ("zero", "daemon, debounce/settle 0", "daemon",
             "debounce_ms: 0\npipelock:\n  settle_ms: 0\negress:\n  settle_ms: 0\n"),
            ("raw", "raw limit (write, kill(2) the container's pid)", "raw", None)]
    containers, daemons, pollers, image, upstream = [], [], [], None, None
    load0 = os.getloadavg()
    try:
        image, mounts = s6_image(env, mitmdump, py)
        logs = os.path.join(env.tmp, "s6-logs")
        os.makedirs(logs)
        alts = []
        for key, label, kind, config in defs:
            b = Bottles(env, f"s6-{key}", 1, f"s6{key}{run}-")
            slug = b.slugs[0]
            hosts = [f"{key}-{i}.bench.example" for i in range(changes)]
            pl, eg = f"{slug}-pipelock-1", f"{slug}-egress-1"
            docker_run(pl, [*mounts, "-v", f"{os.path.dirname(b.path(slug, 'pipelock'))}:/cfg",
                            "-e", "ASAN_OPTIONS=detect_leaks=0", image, "/br-test-sidecar", "--mode", "pipelock",
                            "--file", "/cfg/pipelock.yaml", "--log", "-", "--pidfile", "/tmp/pipelock.pid"],
                       "pipelock stand-in")
            containers.append(pl)
            eg_log = os.path.join(logs, f"{slug}.egress.log")
            # The launcher's output goes to a file, not to the container's
            # log: mitmdump logs every refused poll, and the Engine's log
            # driver would take CPU from what is measured.
            docker_run(eg, [*mounts, "-v", f"{os.path.dirname(b.path(slug, 'egress'))}:/cfg",
                            "-v", f"{logs}:/logs", "-e", "HOME=/mitm",
                            *[a for h in hosts for a in ("--add-host", f"{h}:host-gateway")],
                            image, "/bin/sh", "-c",
                            f"trap '' HUP; exec /egress/egress-proxy --routes /cfg/egress_routes.yaml "
                            f"--listen 0.0.0.0:8080 --status /logs/{slug}.egress.status.json --confdir /mitm "
                            f"-- --set flow_detail=0 >>/logs/{slug}.egress.log 2>&1"], "egress proxy")
            containers.append(eg)
            alts.append(dict(key=key, label=label, kind=kind, config=config, b=b, slug=slug, pl=pl, eg=eg,
                             eg_log=eg_log, hosts=hosts, lat=[], polls=[], rtt=[], t0=[], allowed=[], trip=[]))

        def egress_ready(a):
            try:
                with open(a["eg_log"], errors="replace") as f:
                    text = f.read()
            except OSError:
                return False
            if "Proxy server listening at" in text and "egress: SIGHUP reloads " in text:
                return True
            if subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", a["eg"]], capture_output=True,
                              text=True).stdout.strip() != "true":
                raise RuntimeError(f"the egress proxy container {a['eg']} stopped: {tail(a['eg_log'])}")
            return False

        for a in alts:
            wait_until(f"{a['eg']}: the egress proxy did not listen", lambda: egress_ready(a))
            wait_until(f"{a['pl']}: the pipelock stand-in wrote no start line",
                       lambda: b" start " in subprocess.run(["docker", "logs", a["pl"]],
                                                              capture_output=True).stdout)
            info = subprocess.run(["docker", "inspect", "-f",
                                   "{{.State.Pid}} {{.NetworkSettings.IPAddress}} {{.NetworkSettings.Gateway}}",
                                   a["pl"], a["eg"]], check=True, capture_output=True, text=True).stdout.split("\n")
            a["pl_pid"] = int(info[0].split()[0])
            a["eg_pid"], a["eg_ip"], gateway = int(info[1].split()[0]), info[1].split()[1], info[1].split()[2]
        # One upstream for every proxy, on the bridge's gateway: the address
        # --add-host's host-gateway gives each new host's name in the proxy.
        port_file, record = os.path.join(env.tmp, "s6-upstream.port"), os.path.join(env.tmp, "s6-upstream.jsonl")
        upstream = spawn([py, UPSTREAM, "--record", record, "--port-file", port_file, "--bind", gateway])
        wait_until("the upstream did not listen", lambda: os.path.exists(port_file), 30)
        up_port = int(open(port_file).read())
        seen = UpstreamRecord(record)
        for a in alts:
            pollers.append(Poller(py, a["eg_ip"], 8080))
            a["poller"] = pollers[-1]
            if a["kind"] == "daemon":
                d = Daemon(env, f"s6-{a['key']}", a["b"].state, f"state_dir: {a['b'].state}\n" + a["config"])
                a["daemon"] = d
                daemons.append(d)
        # The docker driver's start-up grace (2 s): a younger container is not signalled yet.
        wait_older_than([p for a in alts for p in (a["pl_pid"], a["eg_pid"])], GRACE_S)
        for d in daemons:
            d.start()

        def expected(a, i):
            """Both live files after change i, as the daemon renders them."""
            routes = [{"host": "init.bench.example", "path_allowlist": [f"/{a['slug']}/init/"]}]
            routes += [{"host": h, "path_allowlist": ["/"]} for h in a["hosts"][:i + 1]]
            return (pipelock_bytes(["init.bench.example"] + a["hosts"][:i + 1]),
                    (json.dumps({"routes": routes}, indent=2) + "\n").encode())

        def fire_daemon(a, i):
            staged = os.path.join(a["b"].stage, "approval.json")
            write(staged, egress_bytes(a["hosts"][i], ["/"]))
            t0 = time.time_ns()
            os.rename(staged, os.path.join(a["b"].state, a["slug"], "routes.d", f"~approval-{i:04d}.json"))
            return t0

        def fire_old(a, i):
            host, b, slug = a["hosts"][i], a["b"], a["slug"]
            t0 = time.time_ns()
            live = subprocess.run(["docker", "exec", a["eg"], "cat", "/cfg/egress_routes.yaml"], check=True,
                                  capture_output=True).stdout
            doc = json.loads(live)
            validate_routes(doc)
            doc["routes"].append({"host": host, "path_allowlist": ["/"]})
            validate_routes(doc)
            pl = subprocess.run(["docker", "exec", a["pl"], "cat", "/cfg/pipelock.yaml"], check=True,
                                capture_output=True).stdout.decode()
            write_replace(b.path(slug, "pipelock"), splice_allowlist(pl, host).encode())
            subprocess.run(["docker", "kill", "--signal", "HUP", a["pl"]], check=True, capture_output=True)
            write_replace(b.path(slug, "egress"), (json.dumps(doc, indent=2) + "\n").encode())
            subprocess.run(["docker", "kill", "--signal", "HUP", a["eg"]], check=True, capture_output=True)
            return t0

        def fire_raw(a, i):
            pl, eg = expected(a, i)
            b, slug = a["b"], a["slug"]
            t0 = time.time_ns()
            held = [write_durable(b.path(slug, "pipelock"), pl)]
            os.kill(a["pl_pid"], signal.SIGHUP)
            held.append(write_durable(b.path(slug, "egress"), eg))
            os.kill(a["eg_pid"], signal.SIGHUP)
            for fd in held:
                os.close(fd)
            return t0

        fire = {"daemon": fire_daemon, "old": fire_old, "raw": fire_raw}
        loads = []  # the 1-minute load average at each change: what else the machine was doing
        for i in range(changes):
            loads.append(os.getloadavg()[0])
            k = i % len(alts)
            for a in alts[k:] + alts[:k]:
                host = a["hosts"][i]
                a["poller"].send(f"http://{host}:{up_port}/{a['key']}/{i}", 30)
                first = a["poller"].read(30)
                if not first["refused"]:
                    raise RuntimeError(f"{a['label']}: {host} before its change was answered {first['status']}, "
                                       f"not refused by the proxy: {first['body']!r}")
                t0 = fire[a["kind"]](a, i)
                done = a["poller"].read(40)
                if done["status"] != 200:
                    raise RuntimeError(f"{a['label']}: {host} still answered {done['status']} "
                                       f"({done['body']!r}) 30 s after its change")
                at = seen.first_seen(f"{host}:{up_port}")
                if at is None or at < t0:
                    raise RuntimeError(f"{a['label']}: the upstream saw {host} "
                                       f"{'never' if at is None else 'before the change'}")
                a["lat"].append((at - t0) / 1e6)
                a["t0"].append(t0)
                a["allowed"].append(at)
                a["polls"].append(done["polls"])
                # The allowed request's own trip, from the poller's send to the
                # upstream: a new host's first request through the proxy
                # (mitmproxy resolves the name and connects upstream).
                a["trip"].append((at - done["sent_ns"]) / 1e6)
                if done["rtt_us"]:
                    a["rtt"].append(done["rtt_us"][0])
                # The aftermath (the pipelock stand-in's own watcher reloads
                # 100 ms after a write; the old tooling's last docker kill
                # may return after the request got through) must not land
                # in the next alternative's change.
                time.sleep(0.25)
        load1 = os.getloadavg()
        for d in daemons:
            d.stop()
        # Was pipelock running the new host before egress let the request
        # through? The stand-in's own log (the container's) says when it
        # loaded each content.
        for a in alts:
            out = subprocess.run(["docker", "logs", a["pl"]], capture_output=True, check=True).stdout
            loaded = {}
            for line in out.decode(errors="replace").splitlines():
                f = line.split()
                if len(f) >= 4 and f[3] == "ok":
                    sec, nsec = f[0].split(".")
                    loaded.setdefault(f[2], int(sec) * 1_000_000_000 + int(nsec))
            a["pl_first"] = [loaded.get(sha(expected(a, i)[0])) for i in range(changes)]
            a["ahead"] = sum(1 for i in range(changes) if a["pl_first"][i] is None
                             or a["pl_first"][i] > a["allowed"][i])
            a["pl_ms"] = [(p - t) / 1e6 if p else None for p, t in zip(a["pl_first"], a["t0"])]
            if a["kind"] == "daemon":
                with open(os.path.join(a["b"].state, ".reconciler", "audit.jsonl")) as f:
                    details = [json.loads(l) for l in f if l.strip()]
                a["confirmed"] = sum(1 for r in details if "confirmed" in r.get("reload_detail", ""))
        # Each egress proxy must still be the process the changes started with.
        for a in alts:
            now = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}} {{.RestartCount}}", a["eg"]],
                                 capture_output=True, text=True).stdout.split()
            if not now or int(now[0]) != a["eg_pid"]:
                raise RuntimeError(f"{a['eg']} is not the process it was: {now}")
        by = {a["key"]: a for a in alts}
        versions = {"docker": subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                             capture_output=True, text=True).stdout.strip(),
                    "mitmproxy": subprocess.run([mitmdump, "--version"], capture_output=True,
                                                text=True).stdout.split("\n")[0].strip()}
        log(f"  Docker {versions['docker']}, {versions['mitmproxy']}")
        res = {"machine_load": {"before": load0, "after": load1, "at_each_change": loads}, "changes": changes,
               "versions": versions}
        for a in alts:
            res[a["key"]] = {"label": a["label"], "p50_ms": percentile(a["lat"], 50),
                             "p99_ms": percentile(a["lat"], 99), "max_ms": max(a["lat"]), "n": len(a["lat"]),
                             "ms": a["lat"], "pipelock_loaded_ms": a["pl_ms"], "polls": a["polls"],
                             "poll_rtt_us_median": median(a["rtt"]), "egress_before_pipelock": a["ahead"],
                             "allowed_request_trip_ms": a["trip"],
                             "confirmed_reloads": a.get("confirmed")}
        results["approval"] = res
        old50, raw50 = res["old"]["p50_ms"], res["raw"]["p50_ms"]
        for a in alts:
            r = res[a["key"]]
            text = f"p50 {fmt(r['p50_ms'], 'ms')} ms, p99 {fmt(r['p99_ms'], 'ms')} ms over {changes} changes"
            if a["kind"] != "old":
                text += f"; old tooling / this: p50 {old50 / r['p50_ms']:.1f}x"
            if a["kind"] != "raw":
                text += f"; this / raw limit: p50 {r['p50_ms'] / raw50:.1f}x"
            if a["key"] == "conf":
                text += f"; {a['confirmed']} reloads confirmed"
            text += f"; allowed before pipelock loaded: {a['ahead']}"
            table.add(f"{row}, {a['label']}", text, "", text)
        rtt = median([x for a in alts for x in a["rtt"]])
        trip = median([x for a in alts for x in a["trip"]])
        note = (f"every request refused by the proxy before its change ({changes * len(alts)} of "
                f"{changes * len(alts)}); one refused poll (keep-alive) took {rtt / 1000:.1f} ms (median), "
                f"the allowed request from its send to the upstream {trip:.1f} ms (median); "
                f"load average {min(loads):.2f}-{max(loads):.2f} during the run")
        table.add(f"{row}, checks", note, "", note)
        log(f"  {note}")
    except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError, TimeoutError) as e:
        not_run(str(e))
    finally:
        stop_daemons(daemons)
        for p in pollers:
            try:
                p.stop()
            except (OSError, ValueError):
                pass
        if upstream:
            stop(upstream)
        for name in containers:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if image:
            subprocess.run(["docker", "rmi", image], capture_output=True)


# --- main ------------------------------------------------------------------------------

class Env:
    pass


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "mem_gib": round(meminfo("MemTotal") / 1024 / 1024, 1)}


def fs_type(path):
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, f"{fstype} on {dev}"
    return kind


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the bottle-reconciler binary")
    ap.add_argument("--sidecar", required=True, help="the br-test-sidecar binary")
    ap.add_argument("--raw", required=True, help="the br-bench-raw-limit binary")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke test, not a measurement")
    ap.add_argument("--changes", type=int, help="latency: changes per alternative (default 200, quick 20)")
    ap.add_argument("--approvals", type=int,
                    help="scenario 6: approvals per alternative (default 30, quick 3)")
    ap.add_argument("--sizes", help="bottle counts for scenarios 2-4, comma-separated (default 1000,10000; quick 50)")
    ap.add_argument("--rounds", type=int, help="rounds of scenarios 2-3 per size (default 5, quick 2)")
    ap.add_argument("--shell-rounds", type=int,
                    help="rounds of inotify-shell (default: as --rounds below 5,000 bottles, else 1: "
                         "it needs about 25 ms of jq per bottle)")
    ap.add_argument("--idle", type=float, help="idle window in seconds (default 30, quick 5)")
    ap.add_argument("--workers", type=int, default=4, help="raw-limit threads (default 4, the daemon's default)")
    ap.add_argument("--only", help="scenarios to run, e.g. 1,5 (default all)")
    ap.add_argument("--alts", default="daemon,inotify-shell,raw-limit",
                    help="alternatives of scenarios 2-4 (default all three; for profiling)")
    ap.add_argument("--compare", metavar="BIN",
                    help="scenarios 2-4 also run this bottle-reconciler binary (daemon-b, in the log "
                         "and the JSON): an A/B test of a change")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    q = args.quick
    changes = args.changes or (20 if q else 200)
    sizes = [int(x) for x in (args.sizes or ("50" if q else "1000,10000")).split(",")]
    rounds = args.rounds or (2 if q else 5)
    idle_s = args.idle if args.idle is not None else (2 if q else 30)
    only = set((args.only or "1,2,3,4,5,6").split(","))

    env = Env()
    env.bin, env.sidecar, env.raw = (os.path.abspath(x) for x in (args.bin, args.sidecar, args.raw))
    env.tmp = tempfile.mkdtemp(prefix="br-bench.", dir=os.environ.get("TMPDIR", "/tmp"))
    env.limits = Limits()
    env.alts = set(args.alts.split(","))
    env.compare = os.path.abspath(args.compare) if args.compare else None
    env.notes = []
    table = Table()
    m = machine()
    results = {"machine": m, "quick": q, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        log(f"machine: {m['nproc']} CPUs, {m['cpu']}, kernel {m['kernel']}, {m['mem_gib']} GiB; "
            f"files in {env.tmp} ({fs_type(env.tmp)})")
        if "1" in only:
            scenario_latency(env, table, results, changes)
        if only & {"2", "3", "4"}:
            for n in sizes:
                shell_rounds = args.shell_rounds or (rounds if n < 5000 else 1)
                scenario_bulk(env, table, results, n, rounds, min(shell_rounds, rounds), idle_s, args.workers,
                              with_defaults=n <= 1000)
        if "5" in only:
            scenario_docker(env, table, results, min(changes, 10 if q else 50))
        if "6" in only:
            scenario_approval(env, table, results, args.approvals or (3 if q else 30))
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    finally:
        kill_all_children()
        env.limits.restore()
        if args.keep:
            log(f"kept {env.tmp}")
        else:
            shutil.rmtree(env.tmp, ignore_errors=True)
    results["notes"] = env.notes + env.limits.notes
    results["table"] = table.render()
    print()
    print(f"bottle-reconciler benchmark{' (--quick: smoke test, not a measurement)' if q else ''}")
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, kernel {m['kernel']}, {m['mem_gib']} GiB RAM; "
          f"files on {fs_type(env.tmp)}")
    print()
    print(table.render())
    for note in results["notes"]:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return status


if __name__ == "__main__":
    sys.exit(main())
