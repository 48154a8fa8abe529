/* proc: run a program (no shell) with a deadline and capture a bounded
 * excerpt of its output. Knows nothing of what the program is for. */
#ifndef BR_COMMON_PROC_H
#define BR_COMMON_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"

struct br_proc_result {
  int exit_status; /* valid when exited */
  int term_signal; /* valid when killed by a signal */
  bool exited;
  bool timed_out;       /* the deadline passed; the whole process group was killed */
  struct br_buf output; /* stdout and stderr, the first 4 KiB; caller frees */
};

/* Runs argv[0] (searched in PATH) in a new process group with stdin from
 * /dev/null. At timeout_ms the group is sent SIGKILL. Returns 0 when the
 * program could be run (whatever its exit status), else -errno. */
int br_proc_run(char *const argv[], unsigned timeout_ms, struct br_proc_result *res);
/* "exit 3", "killed by SIGTERM", "timed out after N ms". */
void br_proc_describe(const struct br_proc_result *res, unsigned timeout_ms, struct br_buf *out);

/* When process pid started, as CLOCK_REALTIME nanoseconds, from field 22 of
 * /proc/PID/stat (clock ticks since boot, so only as exact as a tick).
 * Returns 0, -ENOENT when there is no such process, or -errno/-EINVAL. */
int br_proc_start_time_ns(pid_t pid, int64_t *realtime_ns);

#endif
