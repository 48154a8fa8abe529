/* proc: posix_spawn with a process group, a pidfd to wait with a deadline,
 * and a pipe for output; small bounded reads of /proc/PID. The caller's
 * thread blocks; the event loop must not call br_proc_run. */
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

extern char **environ;

static void drain(int fd, struct br_buf *out) {
  char chunk[1024];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof chunk)) > 0)
    br_buf_add(out, chunk, (size_t)n); /* past the cap the rest is dropped */
}

static int exited(pid_t pid) {
  siginfo_t info = {0};
  return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

int br_proc_run(char *const argv[], unsigned timeout_ms, struct br_proc_result *res) {
  memset(res, 0, sizeof *res);
  br_buf_init(&res->output, 4096);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0)
    return -errno;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
  /* Own process group, so a timeout kills whatever the program started too;
   * default signal mask and dispositions, whatever the daemon blocks. */
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(pipefd[1]);
  if (rc) {
    close(pipefd[0]);
    return -rc;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  long long deadline = (br_monotonic_ns() / 1000000) + timeout_ms;
  for (;;) {
    long long left = deadline - (br_monotonic_ns() / 1000000);
    if (left <= 0) {
      kill(-pid, SIGKILL);
      res->timed_out = true;
      break;
    }
    struct pollfd fds[2] = {{.fd = pipefd[0], .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    /* Without a pidfd (old kernel) fall back to short polls of waitpid. */
    int nfds = pidfd >= 0 ? 2 : 1;
    int n = poll(fds, (nfds_t)nfds, pidfd >= 0 ? (int)left : (int)(left < 10 ? left : 10));
    if (n < 0 && errno != EINTR)
      break;
    if (fds[0].revents)
      drain(pipefd[0], &res->output);
    if (pidfd >= 0 ? (fds[1].revents & POLLIN) != 0 : exited(pid))
      break;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  drain(pipefd[0], &res->output);
  close(pipefd[0]);
  if (pidfd >= 0)
    close(pidfd);
  if (WIFEXITED(status)) {
    res->exited = true;
    res->exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res->term_signal = WTERMSIG(status);
  }
  return 0;
}

void br_proc_describe(const struct br_proc_result *res, unsigned timeout_ms, struct br_buf *out) {
  if (res->timed_out)
    br_buf_printf(out, "timed out after %u ms", timeout_ms);
  else if (res->exited)
    br_buf_printf(out, "exit %d", res->exit_status);
  else
    br_buf_printf(out, "killed by %s", strsignal(res->term_signal));
  if (res->output.len) {
    /* One line of the program's own words helps more than nothing. */
    size_t n = strcspn(res->output.data, "\n");
    br_buf_printf(out, ": %.*s", (int)(n > 200 ? 200 : n), res->output.data);
  }
}

/* One read() of a buffer larger than the line: procfs makes the whole line
 * at the first read (at most a 64-byte name and 52 numbers), so no fstat()
 * and no read() to learn the end, as br_file_read() needs for ordinary
 * files. Every reload of every sidecar passes here. */
static int read_small(const char *path, char *buf, size_t size, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  ssize_t n;
  while ((n = read(fd, buf, size - 1)) < 0 && errno == EINTR)
    ;
  int rc = n < 0 ? -errno : 0;
  close(fd);
  if (!rc) {
    buf[n] = '\0';
    *len = (size_t)n;
  }
  return rc;
}

int br_proc_stat(pid_t pid, struct br_proc_stat *st) {
  char path[64], line[4096];
  size_t len = 0;
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  int rc = read_small(path, line, sizeof line, &len);
  if (rc)
    return rc;
  /* The command name may hold spaces and ")": fields start after the last ")". */
  char *p = strrchr(line, ')');
  if (!p || p[1] != ' ' || !p[2])
    return -EINVAL;
  st->state = p[2];
  int field = 2;
  for (p++; *p && field < 22; p++)
    if (*p == ' ')
      field++;
  unsigned long long ticks = field == 22 ? strtoull(p, NULL, 10) : 0;
  if (!ticks)
    return -EINVAL;
  long hz = sysconf(_SC_CLK_TCK);
  int64_t boot_ns = (int64_t)(ticks / (unsigned long long)hz) * 1000000000 +
                    (int64_t)(ticks % (unsigned long long)hz) * (1000000000 / hz);
  /* Boot-relative to wall clock: now minus the process's age. */
  st->started_ns = br_clock_ns(CLOCK_REALTIME) - (br_clock_ns(CLOCK_BOOTTIME) - boot_ns);
  return 0;
}

int br_proc_start_time_ns(pid_t pid, int64_t *realtime_ns) {
  struct br_proc_stat st;
  int rc = br_proc_stat(pid, &st);
  if (!rc)
    *realtime_ns = st.started_ns;
  return rc;
}

bool br_proc_state_runs(char state) { return state != 'T' && state != 't' && state != 'Z' && state != 'X'; }

const char *br_proc_state_name(char state) {
  switch (state) {
  case 'T':
    return "stopped";
  case 't':
    return "traced";
  case 'Z':
    return "a zombie";
  case 'X':
    return "dead";
  }
  return "running";
}

int br_proc_exe(pid_t pid, struct br_buf *out) {
  char path[64], target[PATH_MAX + 16];
  snprintf(path, sizeof path, "/proc/%ld/exe", (long)pid);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0)
    return -errno;
  br_buf_reset(out);
  return br_buf_add(out, target, (size_t)n);
}

int br_proc_comm(pid_t pid, char comm[16]) {
  char path[64], line[64];
  size_t len = 0;
  snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
  int rc = read_small(path, line, sizeof line, &len);
  if (rc)
    return rc;
  if (len && line[len - 1] == '\n')
    line[--len] = '\0';
  size_t n = len < 15 ? len : 15;
  memcpy(comm, line, n);
  comm[n] = '\0';
  return 0;
}

int br_proc_cmdline(pid_t pid, struct br_buf *out) {
  size_t max = out->max;
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  br_buf_reset(out);
  char chunk[4096];
  ssize_t n = 0;
  int rc = 0;
  /* procfs hands a long command line out a page at a time. */
  while (!rc && out->len < max && ((n = read(fd, chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR))) {
    size_t take = n < 0 ? 0 : (size_t)n;
    if (take > max - out->len)
      take = max - out->len;
    for (size_t i = 0; i < take; i++)
      if (chunk[i] == '\0')
        chunk[i] = ' ';
    rc = br_buf_add(out, chunk, take);
  }
  if (!rc && n < 0)
    rc = -errno;
  close(fd);
  /* The last argument's NUL became a trailing space. */
  if (!rc && out->len && out->data[out->len - 1] == ' ')
    out->data[--out->len] = '\0';
  return rc;
}
