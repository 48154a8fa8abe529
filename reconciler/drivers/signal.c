/* driver_signal: tells a sidecar process to reload by signalling the pid in
 * its pidfile. It must never signal a process that is not the sidecar (init,
 * this daemon or its parent, another bottle's sidecar, a recycled pid), never
 * a sidecar too young to have installed its SIGHUP handler, and never count
 * a signal that a stopped or dead process cannot act on as a reload. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "common/proc.h"
#include "reconciler/drivers/confirm.h"
#include "reconciler/drivers/reload.h"

/* Command lines longer than this are compared by their first bytes only. */
#define CMDLINE_MAX (64 * 1024)

/* What reading the pidfile gave. */
enum pidfile_read {
  PIDFILE_OK,
  PIDFILE_MISSING, /* no pidfile: the sidecar is not running */
  PIDFILE_SYMLINK, /* refused: it could name another bottle's sidecar */
  PIDFILE_BAD,     /* unreadable, or not one decimal pid; why says which */
};

/* Reads the pid without following a symlink: a bottle that can write its
 * own run directory could otherwise link its pidfile to another bottle's,
 * whose sidecar passes every other check. */
static enum pidfile_read read_pid(const char *pidfile, pid_t *pid, int64_t *mtime_ns, const char **why) {
  struct br_buf text;
  br_buf_init(&text, 64);
  struct stat st;
  int rc = br_file_read_stat(pidfile, 64, true, &text, &st);
  enum pidfile_read out = PIDFILE_OK;
  *why = NULL;
  if (rc == -ENOENT) {
    out = PIDFILE_MISSING;
  } else if (rc == -ELOOP) {
    out = PIDFILE_SYMLINK;
  } else if (rc) {
    out = PIDFILE_BAD;
    *why = rc == -EINVAL ? "not a regular file" : strerror(-rc);
  } else {
    char *end;
    errno = 0;
    long v = strtol(br_buf_str(&text), &end, 10);
    while (*end == '\n' || *end == ' ' || *end == '\r')
      end++;
    if (end == br_buf_str(&text) || *end || errno || v <= 0 || v > 4194304) {
      out = PIDFILE_BAD;
      *why = "expected one decimal pid";
    }
    *pid = (pid_t)v;
    *mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  }
  br_buf_free(&text);
  return out;
}

/* Not running is transient for this driver: a supervisor is expected to
 * start the sidecar again, and the slug must converge when it does. */
static struct br_buf *gone(struct br_reload_result *res) {
  res->status = BR_RELOAD_TRANSIENT;
  br_buf_adds(&res->message, "sidecar not running: ");
  return &res->message;
}

/* Processes no pidfile may get signalled, whatever else it passes: init
 * (SIGHUP or TERM to it reboots or wedges the host), this daemon (it would
 * re-read its config, or stop) and its parent (a supervisor or the shell).
 * Pid reuse cannot explain these, so they are misconfiguration or an attack:
 * permanent. */
static const char *protected_pid(pid_t pid) {
  if (pid == 1)
    return "init";
  if (pid == getpid())
    return "this daemon itself";
  if (pid == getppid())
    return "this daemon's parent";
  return NULL;
}

/* The process's executable matches want: the same path, the path want
 * resolves to (/usr/bin/python3 is python3.11 to the kernel), or either with
 * " (deleted)" (the binary was upgraded under a running sidecar). */
static bool exe_matches(const char *exe, const char *want) {
  char resolved[PATH_MAX];
  const char *alts[] = {want, realpath(want, resolved) ? resolved : want};
  for (size_t i = 0; i < 2; i++) {
    size_t n = strlen(alts[i]);
    if (strncmp(exe, alts[i], n) == 0 && (!exe[n] || strcmp(exe + n, " (deleted)") == 0))
      return true;
  }
  return false;
}

/* What the process looked like, for the expect check and its message. */
struct seen {
  int exe_rc; /* 0 when exe was readable */
  struct br_buf exe, cmdline;
  char comm[16];
};

/* Appends to expected each expect key the process fails, as "exe X",
 * "comm "Y"", "a command line containing "Z"". Returns 0 or -errno when the
 * cmdline_contains template does not expand for this bottle. */
static int mismatches(const struct br_reload_request *req, const struct seen *p, struct br_buf *expected) {
  const struct br_reload_config *rl = req->reload;
  const char *sep = "";
  if (rl->expect_exe && (p->exe_rc || !exe_matches(p->exe.data, rl->expect_exe))) {
    br_buf_printf(expected, "exe %s", rl->expect_exe);
    sep = ", ";
  }
  if (rl->expect_comm && strcmp(p->comm, rl->expect_comm) != 0) {
    br_buf_printf(expected, "%scomm \"%s\"", sep, rl->expect_comm);
    sep = ", ";
  }
  if (!rl->expect_cmdline)
    return 0;
  struct br_buf want;
  br_buf_init(&want, CMDLINE_MAX);
  int rc = br_reload_expand(req, rl->expect_cmdline, &want);
  if (!rc && !strstr(br_buf_str(&p->cmdline), br_buf_str(&want)))
    br_buf_printf(expected, "%sa command line containing \"%s\"", sep, br_buf_str(&want));
  br_buf_free(&want);
  return rc;
}

/* Checks the pinned process against the reload's expect keys. Returns true
 * when that decided res (a mismatch, or the process may not be inspected). */
static bool unexpected(const struct br_reload_request *req, pid_t pid, const char *pidfile,
                       struct br_reload_result *res) {
  const struct br_reload_config *rl = req->reload;
  if (!rl->expect_exe && !rl->expect_comm && !rl->expect_cmdline)
    return false;
  const char *sidecar = br_sidecar_name(req->sidecar);
  struct seen p = {0};
  struct br_buf expected;
  br_buf_init(&p.exe, PATH_MAX + 16);
  br_buf_init(&p.cmdline, CMDLINE_MAX);
  br_buf_init(&expected, 3 * CMDLINE_MAX);
  p.exe_rc = br_proc_exe(pid, &p.exe);
  int rc = br_proc_comm(pid, p.comm);
  if (!rc)
    rc = br_proc_cmdline(pid, &p.cmdline);
  bool decided = true;
  if (rc == -ENOENT || rc == -ESRCH) {
    br_buf_printf(gone(res), "pid %ld from %s exited", (long)pid, pidfile);
  } else if (rc || (rl->expect_exe && (p.exe_rc == -EACCES || p.exe_rc == -EPERM))) {
    /* Only a process that may look at the sidecar can tell what it is. */
    res->status = BR_RELOAD_PERMANENT;
    br_buf_printf(&res->message,
                  "cannot tell whether pid %ld from %s is the %s sidecar (reading /proc/%ld: %s): run this daemon "
                  "as root or as the sidecar's user",
                  (long)pid, pidfile, sidecar, (long)pid, strerror(-(rc ? rc : p.exe_rc)));
  } else if (mismatches(req, &p, &expected)) {
    res->status = BR_RELOAD_PERMANENT;
    br_buf_printf(&res->message, "expect.cmdline_contains \"%s\" does not expand for this bottle",
                  rl->expect_cmdline);
  } else if (expected.len) {
    /* Transient: the sidecar may be restarting and about to write its
     * pidfile again; the pid may have been recycled meanwhile. */
    res->status = BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message,
                  "pid %ld from %s is not the %s sidecar: it runs %s (comm \"%s\", command line \"%.200s\"), "
                  "expected %s; not signalled",
                  (long)pid, pidfile, sidecar, p.exe_rc ? "an executable it does not show" : p.exe.data, p.comm,
                  br_buf_str(&p.cmdline), expected.data);
  } else {
    decided = false;
  }
  br_buf_free(&p.exe);
  br_buf_free(&p.cmdline);
  br_buf_free(&expected);
  return decided;
}

/* Sends the signal to the pinned process. Returns true when that failed
 * (res says why). */
static bool send(const struct br_reload_request *req, int pidfd, pid_t pid, const char *pidfile,
                 struct br_reload_result *res) {
  if (syscall(SYS_pidfd_send_signal, pidfd, req->reload->signo, NULL, 0) == 0)
    return false;
  if (errno == ESRCH)
    br_buf_printf(gone(res), "pid %ld from %s exited", (long)pid, pidfile);
  else {
    res->status = BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message, "cannot signal pid %ld: %s", (long)pid, strerror(errno));
  }
  return true;
}

/* Decides the reload once the pidfile gave pid: every check, then the signal. */
static void reload_pid(const struct br_reload_request *req, pid_t pid, int64_t pidfile_mtime, const char *pidfile,
                       struct br_reload_result *res) {
  const char *protected = protected_pid(pid);
  if (protected) {
    res->status = BR_RELOAD_PERMANENT;
    br_buf_printf(&res->message,
                  "pidfile %s names pid %ld (%s), which is never signalled; expected the %s sidecar's pid",
                  pidfile, (long)pid, protected, br_sidecar_name(req->sidecar));
    return;
  }
  /* Pin the process first: from here on a pid reuse cannot redirect the
   * signal, and what /proc says is of this process while the signal can
   * still reach it. */
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  struct br_proc_stat st;
  char what[32];
  snprintf(what, sizeof what, "pid %ld", (long)pid);
  if (pidfd < 0 || br_proc_stat(pid, &st) < 0) {
    br_buf_printf(gone(res), "pid %ld from %s is gone", (long)pid, pidfile);
  } else if (st.started_ns > pidfile_mtime + BR_TICK_SLACK_NS) {
    /* A sidecar writes its pidfile after it starts; a process younger than
     * the pidfile is an unrelated one that got the pid recycled. */
    br_buf_printf(gone(res), "pidfile %s is stale (pid %ld now belongs to a newer process)", pidfile, (long)pid);
  } else if (br_reload_not_running_state(st.state, what, res)) {
    /* decided: a stopped process only queues the signal, a zombie drops it
     * (and shows no executable or command line to check) */
  } else if (!unexpected(req, pid, pidfile, res)) {
    if (br_reload_too_early(req, st.started_ns, st.started_ns, what, res)) {
      /* decided: not needed, or deferred */
    } else if (!send(req, pidfd, pid, pidfile, res)) {
      res->status = BR_RELOAD_OK;
      br_buf_printf(&res->message, "sent SIG%s to pid %ld", br_signal_name(req->reload->signo), (long)pid);
      if (br_confirm_configured(req))
        br_confirm_reload(req, res);
    }
  }
  if (pidfd >= 0)
    close(pidfd);
}

static int signal_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  struct br_buf pidfile;
  br_buf_init(&pidfile, 4096);
  int rc = br_reload_expand(req, req->reload->pidfile, &pidfile);
  if (rc) {
    br_buf_free(&pidfile);
    res->status = BR_RELOAD_PERMANENT;
    br_buf_adds(&res->message, "pidfile template does not expand");
    return 0;
  }
  pid_t pid = 0;
  int64_t mtime = 0;
  const char *why = NULL;
  switch (read_pid(pidfile.data, &pid, &mtime, &why)) {
  case PIDFILE_MISSING:
    br_buf_printf(gone(res), "no pidfile %s", pidfile.data);
    break;
  case PIDFILE_SYMLINK:
    res->status = BR_RELOAD_PERMANENT;
    br_buf_printf(&res->message,
                  "pidfile %s is a symlink, expected a regular file (a link could name another bottle's "
                  "sidecar); the sidecar must write its pidfile itself",
                  pidfile.data);
    break;
  case PIDFILE_BAD:
    res->status = BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message, "cannot read a pid from %s: %s", pidfile.data, why);
    break;
  case PIDFILE_OK:
    reload_pid(req, pid, mtime, pidfile.data, res);
    break;
  }
  br_buf_free(&pidfile);
  return 0;
}

const struct br_driver_ops br_driver_signal = {.name = "signal", .reload = signal_reload};
