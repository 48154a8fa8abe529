/* br-test-sidecar: plays the egress or the pipelock sidecar for system tests and
 * benchmarks, logging each (re)load it attempts. It must not share the daemon's code. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"
#include "validate.h"

/* Larger files are refused rather than held: a benchmark runs 20,000 of us. */
#define MAX_CONFIG_BYTES ((size_t)16 << 20)
/* pipelock skips a reload whose content hash equals the last loaded one when
 * that load is younger than this; its watcher and a SIGHUP often both fire. */
#define SAME_HASH_WINDOW_NS 2000000000LL
#define MAX_REASON 200

/* What caused a (re)load attempt; each is one word in the log. */
enum load_cause {
  LOAD_START,  /* the load at process start */
  LOAD_RELOAD, /* a SIGHUP */
  LOAD_WATCH,  /* pipelock's own file watcher, after its debounce */
};
static const char *const cause_names[] = {"start", "reload", "watch"};

struct options {
  enum sidecar_mode mode;
  const char *file;
  const char *log;
  const char *pidfile;
  long startup_delay_ms; /* window in which SIGHUP still kills */
  long debounce_ms;      /* pipelock watcher's trailing debounce */
  bool watch;            /* pipelock watcher on (ignored for egress) */
};

struct sidecar {
  struct options opt;
  int log_fd;
  int signal_fd;          /* SIGTERM and SIGINT always; SIGHUP once reloads are armed */
  int inotify_fd;         /* -1 unless the pipelock watcher runs */
  int timer_fd;           /* debounce; armed only between an event and its reload */
  sigset_t signals;       /* the set signal_fd reads, all of it blocked */
  char *watch_dir;        /* owned; the config file's directory */
  const char *watch_name; /* points into opt.file: the basename events must carry */
  bool loaded;            /* a valid config was loaded at least once */
  unsigned char loaded_sha[32];
  struct timespec loaded_at; /* CLOCK_MONOTONIC of that load */
};

/* One reading of the config file. */
struct snapshot {
  char *bytes; /* owned; NULL when too_large */
  size_t len;
  bool too_large; /* more than MAX_CONFIG_BYTES; still hashed in full */
  unsigned char sha[32];
};

static void usage(FILE *out) {
  fputs("usage: br-test-sidecar --mode egress|pipelock --file PATH --log PATH --pidfile PATH\n"
        "                       [--startup-delay-ms N] [--debounce-ms N] [--no-watch]\n",
        out);
}

static int parse_ms(const char *text, long *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < 0 || v > 86400000L)
    return -EINVAL;
  *out = v;
  return 0;
}

static int parse_options(int argc, char **argv, struct options *opt) {
  static const struct option longopts[] = {
      {"mode", required_argument, NULL, 'm'},
      {"file", required_argument, NULL, 'f'},
      {"log", required_argument, NULL, 'l'},
      {"pidfile", required_argument, NULL, 'p'},
      {"startup-delay-ms", required_argument, NULL, 's'},
      {"debounce-ms", required_argument, NULL, 'd'},
      {"no-watch", no_argument, NULL, 'n'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *mode = NULL;
  *opt = (struct options){.debounce_ms = 100, .watch = true};
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'm':
      mode = optarg;
      break;
    case 'f':
      opt->file = optarg;
      break;
    case 'l':
      opt->log = optarg;
      break;
    case 'p':
      opt->pidfile = optarg;
      break;
    case 's':
      if (parse_ms(optarg, &opt->startup_delay_ms)) {
        fprintf(stderr, "br-test-sidecar: --startup-delay-ms: not a number of ms: %s\n", optarg);
        return -EINVAL;
      }
      break;
    case 'd':
      if (parse_ms(optarg, &opt->debounce_ms)) {
        fprintf(stderr, "br-test-sidecar: --debounce-ms: not a number of ms: %s\n", optarg);
        return -EINVAL;
      }
      break;
    case 'n':
      opt->watch = false;
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      return -EINVAL;
    }
  }
  if (optind != argc || !mode || !opt->file || !opt->log || !opt->pidfile) {
    fputs("br-test-sidecar: --mode, --file, --log and --pidfile are required\n", stderr);
    return -EINVAL;
  }
  if (!strcmp(mode, "egress")) {
    opt->mode = SIDECAR_EGRESS;
  } else if (!strcmp(mode, "pipelock")) {
    opt->mode = SIDECAR_PIPELOCK;
  } else {
    fprintf(stderr, "br-test-sidecar: --mode must be egress or pipelock, not %s\n", mode);
    return -EINVAL;
  }
  return 0;
}

static long long elapsed_ns(const struct timespec *from, const struct timespec *to) {
  return (long long)(to->tv_sec - from->tv_sec) * 1000000000LL + (to->tv_nsec - from->tv_nsec);
}

/* Temp file and rename, so whoever reads the pidfile to signal us never sees
 * it empty or half written. */
static int write_pidfile(const char *path) {
  char tmp[PATH_MAX];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof tmp)
    return -ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  char line[32];
  n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
  int rc = 0;
  if (write(fd, line, (size_t)n) != n)
    rc = errno ? -errno : -EIO;
  if (close(fd) && !rc)
    rc = -errno;
  if (!rc && rename(tmp, path))
    rc = -errno;
  if (rc)
    unlink(tmp);
  return rc;
}

/* Removes the pidfile only while it still names us: a successor started by a
 * test may already have replaced it, and its pidfile is not ours to delete. */
static void remove_pidfile(const char *path) {
  char text[32];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0)
    return;
  text[n] = '\0';
  char *end;
  long pid = strtol(text, &end, 10);
  if (pid == (long)getpid() && (*end == '\n' || *end == '\0'))
    unlink(path);
}

/* Reads the whole file, hashing every byte, keeping at most MAX_CONFIG_BYTES. */
static int read_snapshot(const char *path, struct snapshot *snap) {
  *snap = (struct snapshot){.bytes = NULL};
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return -errno;
  struct sidecar_sha256 hash;
  sidecar_sha256_init(&hash);
  size_t cap = 0;
  char chunk[16384];
  int rc = 0;
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0)
      break;
    sidecar_sha256_update(&hash, chunk, (size_t)n);
    if (snap->len + (size_t)n > MAX_CONFIG_BYTES) {
      snap->too_large = true;
      free(snap->bytes);
      snap->bytes = NULL;
    }
    if (!snap->too_large) {
      if (snap->len + (size_t)n > cap) {
        size_t want = cap ? cap * 2 : sizeof chunk;
        while (want < snap->len + (size_t)n)
          want *= 2;
        char *grown = realloc(snap->bytes, want);
        if (!grown) {
          rc = -ENOMEM;
          break;
        }
        snap->bytes = grown;
        cap = want;
      }
      memcpy(snap->bytes + snap->len, chunk, (size_t)n);
    }
    snap->len += (size_t)n;
  }
  close(fd);
  if (rc) {
    free(snap->bytes);
    snap->bytes = NULL;
    return rc;
  }
  sidecar_sha256_final(&hash, snap->sha);
  return 0;
}

/* One line per attempt, in one write(2) on an O_APPEND descriptor: the kernel
 * then appends it whole, so lines of processes sharing a log never mix. */
static void log_attempt(const struct sidecar *sc, enum load_cause cause, const unsigned char *sha, bool ok,
                        const char *reason) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char hex[65];
  if (sha) {
    sidecar_sha256_hex(sha, hex);
  } else {
    memset(hex, '-', 64);
    hex[64] = '\0';
  }
  /* Readers split on spaces and newlines; parser messages may carry either
   * sort of control character, and quoted keys may carry anything. */
  char clean[MAX_REASON + 1];
  size_t n = 0;
  for (const char *r = reason ? reason : ""; *r && n < MAX_REASON; r++)
    clean[n++] = ((unsigned char)*r < 0x20 || *r == 0x7f) ? ' ' : *r;
  clean[n] = '\0';
  if (!ok && !n)
    n = (size_t)snprintf(clean, sizeof clean, "invalid");
  char line[MAX_REASON + 128];
  int len = snprintf(line, sizeof line, "%lld.%09ld %s %s %s%s%s\n", (long long)now.tv_sec, now.tv_nsec,
                     cause_names[cause], hex, ok ? "ok" : "invalid", ok ? "" : " ", ok ? "" : clean);
  ssize_t written = write(sc->log_fd, line, (size_t)len);
  if (written != len)
    fprintf(stderr, "br-test-sidecar: writing %s: %s\n", sc->opt.log,
            written < 0 ? strerror(errno) : "short write");
}

/* A (re)load attempt: what the real sidecar does on start, SIGHUP or watch. An
 * invalid file leaves the loaded config (and its hash) as it was. */
static void load(struct sidecar *sc, enum load_cause cause) {
  struct snapshot snap;
  char reason[MAX_REASON + 1];
  int rc = read_snapshot(sc->opt.file, &snap);
  if (rc == -ENOENT) {
    log_attempt(sc, cause, NULL, false, "missing");
    return;
  }
  if (rc) {
    snprintf(reason, sizeof reason, "unreadable: %s", strerror(-rc));
    log_attempt(sc, cause, NULL, false, reason);
    return;
  }
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (sc->opt.mode == SIDECAR_PIPELOCK && cause != LOAD_START && sc->loaded &&
      !memcmp(snap.sha, sc->loaded_sha, sizeof snap.sha) &&
      elapsed_ns(&sc->loaded_at, &now) < SAME_HASH_WINDOW_NS) {
    free(snap.bytes);
    return;
  }
  if (snap.too_large) {
    snprintf(reason, sizeof reason, "too large: over %zu bytes", MAX_CONFIG_BYTES);
    rc = -EFBIG;
  } else {
    rc = sidecar_validate(sc->opt.mode, snap.bytes ? snap.bytes : "", snap.len, reason, sizeof reason);
  }
  free(snap.bytes);
  if (!rc) {
    sc->loaded = true;
    memcpy(sc->loaded_sha, snap.sha, sizeof snap.sha);
    sc->loaded_at = now;
  }
  log_attempt(sc, cause, snap.sha, !rc, rc ? reason : NULL);
}

/* Drains the signalfd. Returns true when asked to terminate. */
static bool read_signals(struct sidecar *sc, bool *hup) {
  struct signalfd_siginfo si[8];
  bool term = false;
  for (;;) {
    ssize_t n = read(sc->signal_fd, si, sizeof si);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
      if (si[i].ssi_signo == SIGHUP)
        *hup = true;
      else
        term = true;
    }
  }
  return term;
}

static int start_watch(struct sidecar *sc) {
  const char *slash = strrchr(sc->opt.file, '/');
  if (slash) {
    size_t dirlen = slash == sc->opt.file ? 1 : (size_t)(slash - sc->opt.file);
    sc->watch_dir = strndup(sc->opt.file, dirlen);
    sc->watch_name = slash + 1;
  } else {
    sc->watch_dir = strdup(".");
    sc->watch_name = sc->opt.file;
  }
  if (!sc->watch_dir)
    return -ENOMEM;
  sc->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (sc->inotify_fd < 0)
    return -errno;
  /* The directory, not the file: producers replace the file by rename, and a
   * watch on the old inode would never hear of the new one. */
  if (inotify_add_watch(sc->inotify_fd, sc->watch_dir, IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) <
          0 ||
      (sc->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
    int rc = -errno;
    close(sc->inotify_fd);
    sc->inotify_fd = -1;
    return rc;
  }
  return 0;
}

/* Trailing debounce: every relevant event pushes the reload further out. */
static void arm_debounce(struct sidecar *sc) {
  struct itimerspec its = {{0, 0}, {0, 0}};
  its.it_value.tv_sec = sc->opt.debounce_ms / 1000;
  its.it_value.tv_nsec = (sc->opt.debounce_ms % 1000) * 1000000L;
  if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
    its.it_value.tv_nsec = 1; /* an all-zero value would disarm the timer */
  if (timerfd_settime(sc->timer_fd, 0, &its, NULL))
    fprintf(stderr, "br-test-sidecar: timerfd_settime: %s\n", strerror(errno));
}

static void read_watch_events(struct sidecar *sc) {
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  bool relevant = false;
  for (;;) {
    ssize_t n = read(sc->inotify_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      if (ev->len && !strcmp(ev->name, sc->watch_name))
        relevant = true;
      /* fsnotify hands an overflow to pipelock as an error, not as an event,
       * so no reload follows it; we behave the same. */
      if (ev->mask & IN_Q_OVERFLOW)
        fputs("br-test-sidecar: inotify queue overflow; no reload\n", stderr);
      if (ev->mask & IN_IGNORED)
        fprintf(stderr, "br-test-sidecar: watch on %s is gone\n", sc->watch_dir);
      p += sizeof *ev + ev->len;
    }
  }
  if (relevant)
    arm_debounce(sc);
}

/* Installs what makes SIGHUP (and pipelock's watcher) reload instead of kill.
 * As in pipelock, a watcher that cannot start leaves SIGHUP fatal. */
static void arm_reloads(struct sidecar *sc) {
  if (sc->opt.mode == SIDECAR_PIPELOCK && sc->opt.watch) {
    int rc = start_watch(sc);
    if (rc) {
      fprintf(stderr, "br-test-sidecar: watching %s: %s; SIGHUP stays fatal\n",
              sc->watch_dir ? sc->watch_dir : sc->opt.file, strerror(-rc));
      return;
    }
  }
  sigaddset(&sc->signals, SIGHUP);
  sigprocmask(SIG_BLOCK, &sc->signals, NULL);
  /* An inherited SIG_IGN would discard HUP before signalfd could see it;
   * Go's signal.Notify likewise takes HUP over whatever was inherited. */
  signal(SIGHUP, SIG_DFL);
  if (signalfd(sc->signal_fd, &sc->signals, SFD_NONBLOCK | SFD_CLOEXEC) < 0) {
    fprintf(stderr, "br-test-sidecar: signalfd: %s\n", strerror(errno));
    exit(1);
  }
}

/* The start-up window: SIGHUP keeps whatever disposition we inherited (by
 * default it kills, as it does a proxy that has not installed its handler).
 * Returns true when SIGTERM or SIGINT arrived meanwhile. */
static bool startup_window(struct sidecar *sc) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long long window_ns = sc->opt.startup_delay_ms * 1000000LL;
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long left_ns = window_ns - elapsed_ns(&start, &now);
    if (left_ns <= 0)
      return false;
    long long left_ms = (left_ns + 999999) / 1000000;
    struct pollfd pfd = {.fd = sc->signal_fd, .events = POLLIN};
    if (poll(&pfd, 1, left_ms > INT_MAX ? INT_MAX : (int)left_ms) > 0) {
      bool hup = false;
      if (read_signals(sc, &hup))
        return true;
    }
  }
}

static int run(struct sidecar *sc) {
  for (;;) {
    /* poll ignores negative fds, so egress and --no-watch poll only signals;
     * nothing wakes us while idle. */
    struct pollfd pfd[3] = {
        {.fd = sc->signal_fd, .events = POLLIN},
        {.fd = sc->inotify_fd, .events = POLLIN},
        {.fd = sc->timer_fd, .events = POLLIN},
    };
    if (poll(pfd, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      fprintf(stderr, "br-test-sidecar: poll: %s\n", strerror(errno));
      return 1;
    }
    if (pfd[0].revents) {
      bool hup = false;
      if (read_signals(sc, &hup))
        return 0;
      if (hup)
        load(sc, LOAD_RELOAD);
    }
    if (pfd[1].revents)
      read_watch_events(sc);
    if (pfd[2].revents) {
      uint64_t expirations;
      if (read(sc->timer_fd, &expirations, sizeof expirations) == (ssize_t)sizeof expirations)
        load(sc, LOAD_WATCH);
    }
  }
}

int main(int argc, char **argv) {
  struct sidecar sc = {.log_fd = -1, .signal_fd = -1, .inotify_fd = -1, .timer_fd = -1};
  if (parse_options(argc, argv, &sc.opt)) {
    usage(stderr);
    return 2;
  }

  /* A background job of a non-interactive shell inherits SIGINT ignored, and
   * an ignored signal never reaches a signalfd: reset both, then block them. */
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  sigemptyset(&sc.signals);
  sigaddset(&sc.signals, SIGTERM);
  sigaddset(&sc.signals, SIGINT);
  sigprocmask(SIG_BLOCK, &sc.signals, NULL);
  /* A SIGHUP blocked by our parent would make the start-up window harmless. */
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  sigprocmask(SIG_UNBLOCK, &hup, NULL);
  sc.signal_fd = signalfd(-1, &sc.signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sc.signal_fd < 0) {
    fprintf(stderr, "br-test-sidecar: signalfd: %s\n", strerror(errno));
    return 1;
  }

  int rc = write_pidfile(sc.opt.pidfile);
  if (rc) {
    fprintf(stderr, "br-test-sidecar: writing pidfile %s: %s\n", sc.opt.pidfile, strerror(-rc));
    return 1;
  }
  /* "-" is standard output: in a container, that is what `docker logs` and
   * the Engine API show. */
  if (!strcmp(sc.opt.log, "-"))
    sc.log_fd = STDOUT_FILENO;
  else
    sc.log_fd = open(sc.opt.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (sc.log_fd < 0) {
    fprintf(stderr, "br-test-sidecar: opening log %s: %s\n", sc.opt.log, strerror(errno));
    remove_pidfile(sc.opt.pidfile);
    return 1;
  }

  if (sc.opt.startup_delay_ms == 0) {
    /* No window asked for: arm first, so that a test which has seen the
     * start line may send SIGHUP at once. */
    arm_reloads(&sc);
    load(&sc, LOAD_START);
  } else {
    load(&sc, LOAD_START);
    if (startup_window(&sc)) {
      remove_pidfile(sc.opt.pidfile);
      return 0;
    }
    arm_reloads(&sc);
  }

  rc = run(&sc);
  remove_pidfile(sc.opt.pidfile);
  free(sc.watch_dir);
  return rc;
}
