/* driver_signal: tells a sidecar process to reload by signalling the pid in
 * its pidfile. It must never signal a process that is not the sidecar (init,
 * this daemon or its parent, another bottle's sidecar, a recycled pid), never
 * a sidecar too young to have installed its SIGHUP handler, and never count
 * a signal that a stopped or dead process cannot act on as a reload. */
#include <errno.h>
#include <fcntl.h>
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
#include "reconciler/drivers/reload.h"

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
  if (pidfd < 0 || br_proc_stat(pid, &st) < 0) {
    br_buf_printf(gone(res), "pid %ld from %s is gone", (long)pid, pidfile);
  } else if (st.started_ns > pidfile_mtime + BR_TICK_SLACK_NS) {
    /* A sidecar writes its pidfile after it starts; a process younger than
     * the pidfile is an unrelated one that got the pid recycled. */
    br_buf_printf(gone(res), "pidfile %s is stale (pid %ld now belongs to a newer process)", pidfile, (long)pid);
  } else {
    char what[32];
    snprintf(what, sizeof what, "pid %ld", (long)pid);
    if (br_reload_too_early(req, st.started_ns, st.started_ns, what, res)) {
      /* decided: not needed, or deferred */
    } else if (br_reload_not_running_state(st.state, what, res)) {
      /* decided: a stopped process only queues the signal, a zombie drops it */
    } else if (!send(req, pidfd, pid, pidfile, res)) {
      res->status = BR_RELOAD_OK;
      br_buf_printf(&res->message, "sent SIG%s to pid %ld", br_signal_name(req->reload->signo), (long)pid);
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
