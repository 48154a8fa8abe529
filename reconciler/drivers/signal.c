/* driver_signal: tells a sidecar process to reload by signalling the pid in
 * its pidfile. It must never signal a process that is not the sidecar, and
 * never a sidecar too young to have installed its SIGHUP handler. */
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

static int read_pid(const char *pidfile, pid_t *pid, int64_t *mtime_ns) {
  struct br_buf text;
  br_buf_init(&text, 64);
  struct stat st;
  int rc = br_file_read_stat(pidfile, 64, false, &text, &st);
  if (!rc) {
    char *end;
    long v = strtol(text.data, &end, 10);
    while (*end == '\n' || *end == ' ' || *end == '\r')
      end++;
    if (end == text.data || *end || v <= 1 || v > 4194304)
      rc = -EINVAL;
    *pid = (pid_t)v;
  }
  br_buf_free(&text);
  if (!rc)
    *mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  return rc;
}

/* Not running is transient for this driver: a supervisor is expected to
 * start the sidecar again, and the slug must converge when it does. */
static struct br_buf *gone(struct br_reload_result *res) {
  res->status = BR_RELOAD_TRANSIENT;
  br_buf_adds(&res->message, "sidecar not running: ");
  return &res->message;
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
  int64_t pidfile_mtime = 0;
  rc = read_pid(pidfile.data, &pid, &pidfile_mtime);
  int pidfd = -1;
  if (rc == -ENOENT) {
    br_buf_printf(gone(res), "no pidfile %s", pidfile.data);
    goto out;
  }
  if (rc) {
    res->status = BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message, "cannot read a pid from %s: %s", pidfile.data,
                  rc == -EINVAL ? "expected one decimal pid" : strerror(-rc));
    goto out;
  }
  /* Pin the process first: from here on a pid reuse cannot redirect the signal. */
  pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  int64_t started = 0;
  if (pidfd < 0 || br_proc_start_time_ns(pid, &started) < 0) {
    br_buf_printf(gone(res), "pid %ld from %s is gone", (long)pid, pidfile.data);
    goto out;
  }
  if (started > pidfile_mtime + BR_TICK_SLACK_NS) {
    /* A sidecar writes its pidfile after it starts; a process younger than
     * the pidfile is an unrelated one that got the pid recycled. */
    br_buf_printf(gone(res), "pidfile %s is stale (pid %ld now belongs to a newer process)", pidfile.data,
                  (long)pid);
    goto out;
  }
  char what[32];
  snprintf(what, sizeof what, "pid %ld", (long)pid);
  if (br_reload_too_early(req, started, started, what, res))
    goto out;
  if (syscall(SYS_pidfd_send_signal, pidfd, req->reload->signo, NULL, 0) < 0) {
    if (errno == ESRCH)
      br_buf_printf(gone(res), "pid %ld from %s exited", (long)pid, pidfile.data);
    else {
      res->status = BR_RELOAD_TRANSIENT;
      br_buf_printf(&res->message, "cannot signal pid %ld: %s", (long)pid, strerror(errno));
    }
    goto out;
  }
  res->status = BR_RELOAD_OK;
  br_buf_printf(&res->message, "sent SIG%s to pid %ld", br_signal_name(req->reload->signo), (long)pid);
out:
  if (pidfd >= 0)
    close(pidfd);
  br_buf_free(&pidfile);
  return 0;
}

const struct br_driver_ops br_driver_signal = {.name = "signal", .reload = signal_reload};
