/* Unit tests for common/notify: the datagram a service manager receives on a
 * path socket and on an abstract one, and the watchdog variables. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "common/notify.h"

/* Binds a datagram socket at name (a path, or "@x" for abstract). */
static int listener(const char *name) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  size_t len = strlen(name);
  memcpy(a.sun_path, name, len);
  if (name[0] == '@')
    a.sun_path[0] = '\0';
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '/'));
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, alen) < 0) {
    perror("bind");
    exit(1);
  }
  return fd;
}

static void expect(int fd, const char *want) {
  char got[1100];
  ssize_t n = recv(fd, got, sizeof got - 1, MSG_DONTWAIT);
  got[n > 0 ? n : 0] = '\0';
  CHECK_STR(got, want);
}

int main(void) {
  unsetenv("NOTIFY_SOCKET");
  CHECK(br_notify("READY=1") == 0);

  char path[] = "/tmp/br-notify-XXXXXX";
  CHECK(mkdtemp(path) != NULL);
  char sock[64];
  snprintf(sock, sizeof sock, "%s/n.sock", path);
  int fd = listener(sock);
  setenv("NOTIFY_SOCKET", sock, 1);
  CHECK(br_notify("READY=1") == 1);
  expect(fd, "READY=1");
  CHECK(br_notify("STATUS=%u converged", 7u) == 1);
  expect(fd, "STATUS=7 converged");
  /* A manager that stops reading: its queue fills, and then a status line
   * is dropped (-EAGAIN) rather than the caller blocked. */
  int sent = 0, rc;
  while ((rc = br_notify("STATUS=%d", sent)) == 1 && sent < 1000000)
    sent++;
  CHECK(rc == -EAGAIN);
  CHECK(sent > 0);
  close(fd);
  unlink(sock);
  rmdir(path);

  char abstract[64];
  snprintf(abstract, sizeof abstract, "@br-notify-test-%d", (int)getpid());
  fd = listener(abstract);
  setenv("NOTIFY_SOCKET", abstract, 1);
  CHECK(br_notify("STOPPING=1") == 1);
  expect(fd, "STOPPING=1");
  close(fd);

  setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
  CHECK(br_notify("READY=1") < 0);

  uint64_t usec = 0;
  unsetenv("WATCHDOG_USEC");
  CHECK(br_notify_watchdog_usec(&usec) == 0);
  setenv("WATCHDOG_USEC", "200000", 1);
  unsetenv("WATCHDOG_PID");
  CHECK(br_notify_watchdog_usec(&usec) == 1 && usec == 200000);
  setenv("WATCHDOG_PID", "1", 1); /* another process of the unit */
  CHECK(getpid() == 1 || br_notify_watchdog_usec(&usec) == 0);
  char self[32];
  snprintf(self, sizeof self, "%d", (int)getpid());
  setenv("WATCHDOG_PID", self, 1);
  CHECK(br_notify_watchdog_usec(&usec) == 1);
  setenv("WATCHDOG_USEC", "soon", 1);
  CHECK(br_notify_watchdog_usec(&usec) == 0);
  CHECK_DONE();
}
