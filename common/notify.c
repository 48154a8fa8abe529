/* notify: sd_notify(3) without libsystemd. systemd documents the protocol
 * as stable and meant to be reimplemented; linking libsystemd for it cost
 * about 1 MB resident (lz4, zstd, lzma, gcrypt loaded with it). */
#include "common/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int notify_fd = -1;

int br_notify(const char *fmt, ...) {
  const char *where = getenv("NOTIFY_SOCKET");
  if (!where || !*where)
    return 0;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t len = strlen(where);
  if ((where[0] != '/' && where[0] != '@') || len >= sizeof addr.sun_path)
    return -EAFNOSUPPORT; /* vsock: and relative paths: not ours to guess */
  memcpy(addr.sun_path, where, len);
  if (where[0] == '@')
    addr.sun_path[0] = '\0'; /* abstract: no terminating NUL counted */
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (where[0] == '/'));

  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -EINVAL;
  if ((size_t)n >= sizeof msg)
    n = sizeof msg - 1; /* a STATUS line cut short beats none */

  if (notify_fd < 0 && (notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
    return -errno;
  /* MSG_DONTWAIT: a manager that stopped reading fills its socket's queue,
   * and a blocking send would then stop the whole event loop (seen in the
   * benchmark's harness). A status line dropped is better. */
  if (sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, addr_len) < 0)
    return -errno;
  return 1;
}

int br_notify_state(const char *state) {
  /* The manager's queue is shared by every unit; at boot it can be full for
   * a moment. Losing READY=1 would get a Type=notify unit killed, so these
   * few messages wait a little for room; never for long. */
  struct timespec nap = {.tv_sec = 0, .tv_nsec = 5 * 1000000};
  int rc = br_notify("%s", state);
  for (int tries = 0; rc == -EAGAIN && tries < 400; tries++) {
    nanosleep(&nap, NULL);
    rc = br_notify("%s", state);
  }
  return rc;
}

int br_notify_watchdog_usec(uint64_t *usec) {
  const char *s = getenv("WATCHDOG_USEC");
  if (!s || !*s)
    return 0;
  const char *pid = getenv("WATCHDOG_PID");
  if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
    return 0; /* meant for another process of the unit */
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v == 0)
    return 0;
  *usec = v;
  return 1;
}
