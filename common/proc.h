/* proc: run a program (no shell) with a deadline and capture a bounded
 * excerpt of its output, and read what /proc says of a process (state,
 * start time, executable, name, command line). Knows nothing of what the
 * program or the process is for. */
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

/* What /proc/PID/stat says of a process. */
struct br_proc_stat {
  char state;         /* field 3: R, S, D, T (stopped), t (traced), Z (zombie), X (dead), ... */
  int64_t started_ns; /* field 22 as CLOCK_REALTIME nanoseconds (only as exact as a clock tick) */
};

/* Reads /proc/PID/stat. Returns 0, -ENOENT when there is no such process,
 * or -errno/-EINVAL. */
int br_proc_stat(pid_t pid, struct br_proc_stat *st);
/* When process pid started, as br_proc_stat's started_ns. */
int br_proc_start_time_ns(pid_t pid, int64_t *realtime_ns);
/* Whether a process in this state would act on a signal now: not stopped
 * (T, t), not a zombie (Z) or dead (X). */
bool br_proc_state_runs(char state);
/* "stopped", "traced", "a zombie", "dead" or "running" for a state letter. */
const char *br_proc_state_name(char state);

/* The executable of process pid, as readlink(/proc/PID/exe) gives it (a
 * replaced or removed file ends in " (deleted)"). Returns 0, -ENOENT (no
 * such process, or no executable: a kernel thread), -EACCES/-EPERM (not
 * allowed to look: needs the same user, or root/CAP_SYS_PTRACE), or -errno. */
int br_proc_exe(pid_t pid, struct br_buf *out);
/* The process's name, /proc/PID/comm without its newline (at most 15 bytes:
 * the kernel truncates it). Returns 0 or -errno. */
int br_proc_comm(pid_t pid, char comm[16]);
/* The command line, its arguments joined by single spaces, at most out->max
 * bytes of it (a longer one is cut). Returns 0 or -errno; an empty result
 * is a kernel thread or a zombie. */
int br_proc_cmdline(pid_t pid, struct br_buf *out);

#endif
