/* driver_docker: tells a sidecar container to reload. It signals the
 * container's host pid through a pidfd when this daemon can see it (kill(2)
 * leaves Docker's restart policy alone), else asks the engine to. It must
 * never signal a paused container (Docker's kill would unpause it), a process
 * that is not the container's, or a container too young to have its handler. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/sha256.h"
#include "reconciler/drivers/docker_container.h"
#include "reconciler/drivers/docker_engine.h"
#include "reconciler/drivers/reload.h"

/* Docker records State.StartedAt after the container's process is already
 * running, so the process may have read its file a little before that time.
 * Without the process's own start time, only a container that started this
 * much after the write is taken to have read the new file. */
#define STARTED_AT_MARGIN_NS (1000 * 1000000LL)
#define MOUNT_CACHE_SLOTS 128

/* ---- the bind-mount verdict, cached per container start ------------------- */

enum mount_verdict {
  MOUNT_OK,          /* a directory mount holds the file */
  MOUNT_UNKNOWN,     /* no mount of the container holds the file: nothing to check */
  MOUNT_SINGLE_FILE, /* the file itself is bind-mounted: renames never reach it */
  MOUNT_STALE,       /* the mount shows a deleted or replaced source (never cached) */
};

/* A container's mounts are fixed when it starts, so what its inspect says
 * of them is judged once per (container, start, file); a restart re-resolves
 * them and is judged anew. */
struct mount_cache_entry {
  char id[BR_DOCKER_ID_LEN + 1];
  int64_t started_at_ns;
  char *file;
  enum mount_verdict verdict;
  char *message;
};

static struct {
  pthread_mutex_t lock;
  struct mount_cache_entry slots[MOUNT_CACHE_SLOTS];
  size_t next; /* round robin: the oldest entry goes first */
} mount_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool cache_get(const struct br_docker_container *c, const char *file, enum mount_verdict *verdict,
                      struct br_buf *message) {
  bool hit = false;
  pthread_mutex_lock(&mount_cache.lock);
  for (size_t i = 0; i < MOUNT_CACHE_SLOTS && !hit; i++) {
    struct mount_cache_entry *e = &mount_cache.slots[i];
    if (e->file && e->started_at_ns == c->started_at_ns && strcmp(e->id, c->id) == 0 &&
        strcmp(e->file, file) == 0) {
      hit = true;
      *verdict = e->verdict;
      br_buf_adds(message, e->message);
    }
  }
  pthread_mutex_unlock(&mount_cache.lock);
  return hit;
}

static void cache_put(const struct br_docker_container *c, const char *file, enum mount_verdict verdict,
                      const char *message) {
  char *file_copy = strdup(file), *message_copy = strdup(message);
  if (!file_copy || !message_copy) {
    free(file_copy);
    free(message_copy);
    return; /* the check runs again next time */
  }
  pthread_mutex_lock(&mount_cache.lock);
  struct mount_cache_entry *e = &mount_cache.slots[mount_cache.next++ % MOUNT_CACHE_SLOTS];
  free(e->file);
  free(e->message);
  memcpy(e->id, c->id, sizeof e->id);
  e->started_at_ns = c->started_at_ns;
  e->file = file_copy;
  e->verdict = verdict;
  e->message = message_copy;
  pthread_mutex_unlock(&mount_cache.lock);
}

/* ---- one reload ------------------------------------------------------------ */

/* What one reload knows about its container. */
struct target {
  const struct br_reload_request *req;
  struct br_reload_result *res;
  struct br_buf name;           /* the container, from the template */
  struct br_buf socket;         /* the engine's unix socket */
  struct br_buf container_path; /* the live file inside the container, when a mount holds it */
  struct br_docker_container c;
  int pidfd;               /* the container's first process, when visible here; else -1 */
  int64_t proc_started_ns; /* its start time, when pidfd >= 0 */
};

static void say(struct target *t, enum br_reload_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(struct target *t, enum br_reload_status status, const char *fmt, ...) {
  t->res->status = status;
  br_buf_reset(&t->res->message);
  va_list ap;
  va_start(ap, fmt);
  br_buf_vprintf(&t->res->message, fmt, ap);
  va_end(ap);
}

/* Signal 0 checks permission too: EPERM still means the process is there. */
static bool pidfd_alive(int pidfd) {
  return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0 || errno == EPERM;
}

/* Pins the container's first process with a pidfd when this daemon shares
 * the host's pid namespace, and proves it is the container's: its cgroup
 * path names the container id (cgroup v1 and v2, either cgroup driver). The
 * pidfd, opened first, makes the proof stick: the process read through /proc
 * is the one the pidfd holds as long as that process is still alive after. */
static void pin_process(struct target *t) {
  t->pidfd = -1;
  if (t->c.pid <= 1)
    return;
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)t->c.pid, 0);
  if (pidfd < 0)
    return;
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/cgroup", t->c.pid);
  struct br_buf cgroup;
  br_buf_init(&cgroup, 64 * 1024);
  bool owned = br_file_read(path, cgroup.max, false, &cgroup) == 0 && cgroup.data &&
               strstr(cgroup.data, t->c.id) && br_proc_start_time_ns((pid_t)t->c.pid, &t->proc_started_ns) == 0 &&
               pidfd_alive(pidfd);
  br_buf_free(&cgroup);
  if (owned)
    t->pidfd = pidfd;
  else
    close(pidfd);
}

/* Inspects the container. Returns true when that already decides the
 * reload (no container, not running, engine trouble). */
static bool inspect(struct target *t) {
  struct br_docker_answer ans;
  struct br_buf err, path;
  br_docker_answer_init(&ans);
  br_buf_init(&err, 4096);
  br_buf_init(&path, 512);
  br_buf_printf(&path, "/containers/%s/json", t->name.data);
  bool decided = true;
  int rc = br_docker_request(t->socket.data, "GET", path.data, BR_DOCKER_REQUEST_TIMEOUT_MS, &ans, &err);
  if (rc) {
    say(t, BR_RELOAD_TRANSIENT, "%s", err.data ? err.data : strerror(-rc));
  } else if (ans.status == 404) {
    say(t, BR_RELOAD_NOT_RUNNING, "sidecar not running: no container %s; it reads the file when it starts",
        t->name.data);
  } else if (ans.status != 200) {
    br_docker_answer_describe(&ans, &err);
    say(t, BR_RELOAD_TRANSIENT, "inspecting container %s: %s", t->name.data, err.data);
  } else if ((rc = br_docker_container_parse(ans.body.data, ans.body.len, &t->c, &err))) {
    say(t, BR_RELOAD_TRANSIENT, "inspecting container %s: %s", t->name.data,
        rc == -ENOMEM ? "out of memory" : err.data);
  } else if (!t->c.running || t->c.restarting) {
    say(t, BR_RELOAD_NOT_RUNNING, "sidecar not running: container %s is %s; it reads the file when it starts",
        t->name.data, t->c.restarting ? "restarting" : "stopped");
  } else {
    decided = false;
  }
  br_docker_answer_free(&ans);
  br_buf_free(&err);
  br_buf_free(&path);
  return decided;
}

/* The mount of the container that holds the live file, and the file's path
 * inside the container. */
static const struct br_docker_mount *find_mount(struct target *t, bool *exact) {
  const struct br_docker_mount *m = br_docker_mount_for(&t->c, t->req->file, exact, &t->container_path);
  char resolved[PATH_MAX];
  if (!m && realpath(t->req->file, resolved)) /* Docker may hold the source with symlinks resolved */
    m = br_docker_mount_for(&t->c, resolved, exact, &t->container_path);
  return m;
}

/* What the inspect's Mounts say, once per container start. */
static enum mount_verdict first_sight(struct target *t, struct br_buf *why) {
  const char *name = t->name.data;
  bool exact = false;
  const struct br_docker_mount *m = find_mount(t, &exact);
  if (!m) {
    br_buf_printf(why, "no mount of container %s holds %s, so its view of the file cannot be checked", name,
                  t->req->file);
    return MOUNT_UNKNOWN;
  }
  /* Inspect shows a file and a directory mount alike; the host can tell. */
  struct stat st;
  if (!exact || stat(m->source, &st) < 0 || !S_ISREG(st.st_mode))
    return MOUNT_OK;
  /* The fix names both directories: the source's and the destination's. */
  const char *src_slash = strrchr(m->source, '/'), *dst_slash = strrchr(m->destination, '/');
  int src_dir = src_slash && src_slash != m->source ? (int)(src_slash - m->source) : 1;
  int dst_dir = dst_slash && dst_slash != m->destination ? (int)(dst_slash - m->destination) : 1;
  br_buf_printf(why,
                "container %s bind-mounts the file %s itself (at %s): such a mount keeps the old file after "
                "every atomic replace, so the sidecar would never see a change; bind-mount the directory "
                "instead (-v %.*s:%.*s) and recreate the container",
                name, m->source, m->destination, src_dir, m->source, dst_dir, m->destination);
  return MOUNT_SINGLE_FILE;
}

/* Whether the container's mount of the file's directory still is this
 * host's directory. Not cached: the host side can be removed or renamed
 * while the container runs, and the check is two stats and one small read.
 * Needs the container's process (pidfd). */
static bool mount_stale(struct target *t, struct br_buf *why) {
  bool exact = false;
  const struct br_docker_mount *m = find_mount(t, &exact);
  if (!m || t->pidfd < 0)
    return false;
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "/proc/%ld/mountinfo", t->c.pid);
  struct br_buf mountinfo, root;
  br_buf_init(&mountinfo, 4 * 1024 * 1024);
  br_buf_init(&root, PATH_MAX);
  bool stale = false;
  struct stat host, inside;
  if (br_file_read(path, mountinfo.max, false, &mountinfo) == 0 && mountinfo.data &&
      br_mountinfo_root(mountinfo.data, mountinfo.len, m->destination, &root) == 0 &&
      br_mount_root_deleted(root.data)) {
    /* The kernel's own word: the mounted source was unlinked on the host. */
    br_buf_printf(why,
                  "container %s reads a deleted %s: its bind mount of %s at %s is stale (the kernel shows it "
                  "as %s); restart the container so that Docker mounts %s again",
                  t->name.data, exact ? "file" : "directory", m->source, m->destination, root.data, m->source);
    stale = true;
  } else if (snprintf(path, sizeof path, "/proc/%ld/root%s", t->c.pid, m->destination) > 0 &&
             stat(m->source, &host) == 0 && stat(path, &inside) == 0 &&
             (host.st_dev != inside.st_dev || host.st_ino != inside.st_ino)) {
    /* Renamed away rather than removed: the kernel's path follows the
     * rename, so only the identities tell. */
    br_buf_printf(why,
                  "container %s does not see this host's %s: its bind mount at %s still holds what was there "
                  "when it started (renamed or replaced since); restart the container so that Docker mounts "
                  "%s again",
                  t->name.data, m->source, m->destination, m->source);
    stale = true;
  }
  br_buf_free(&mountinfo);
  br_buf_free(&root);
  return stale;
}

/* Returns true when the mounts decide the reload: the container would not
 * see the file it is told to re-read. */
static bool check_mounts(struct target *t) {
  enum mount_verdict verdict;
  struct br_buf why;
  br_buf_init(&why, 4096);
  if (!cache_get(&t->c, t->req->file, &verdict, &why)) {
    verdict = first_sight(t, &why);
    cache_put(&t->c, t->req->file, verdict, br_buf_str(&why));
    /* Said once per container start, not on every reload. */
    if (verdict == MOUNT_UNKNOWN)
      br_log(BR_LOG_WARN, t->req->slug, "%s: %s", br_sidecar_name(t->req->sidecar), why.data);
  }
  if (verdict == MOUNT_OK && mount_stale(t, &why))
    verdict = MOUNT_STALE;
  else if (verdict != MOUNT_SINGLE_FILE)
    find_mount(t, NULL); /* fills container_path for verify */
  bool decided = verdict == MOUNT_SINGLE_FILE || verdict == MOUNT_STALE;
  if (decided)
    say(t, BR_RELOAD_PERMANENT, "%s", why.data);
  br_buf_free(&why);
  return decided;
}

/* Docker's kill marks the container stopped by hand: it is then not
 * restarted when it dies later. A stop signal other than the one sent saves
 * "always" and "on-failure", never "unless-stopped" (measured on 20.10). */
static bool is_signal(const char *name, int signo) {
  if (strncasecmp(name, "SIG", 3) == 0)
    name += 3;
  char *end;
  long number = strtol(name, &end, 10);
  if (end != name && !*end)
    return number == signo;
  const char *ours = br_signal_name(signo);
  return ours && strcasecmp(name, ours) == 0;
}

static void warn_api_kill_once(const struct target *t, const char *why) {
  static atomic_bool warned;
  const char *policy = t->c.restart_policy, *stop = t->c.stop_signal;
  bool kept = stop[0] && !is_signal(stop, t->req->reload->signo) &&
              (strcmp(policy, "always") == 0 || strncmp(policy, "on-failure", 10) == 0);
  if (!policy[0] || kept || atomic_exchange(&warned, true))
    return;
  br_log(BR_LOG_WARN, t->req->slug,
         "signalling container %s through the Docker Engine API, since %s: Docker then counts it as stopped "
         "by hand, and its restart policy \"%s\" will not restart it if it dies later. Let this daemon signal "
         "the process itself (run it in the host's pid namespace, as root or with CAP_KILL), or give the "
         "sidecars restart policy \"always\" and a stop signal other than SIG%s. (Said once.)",
         t->name.data, why, policy, br_signal_name(t->req->reload->signo));
}

/* Delivers the signal. Returns true when that decided the reload otherwise
 * than "sent". */
static bool deliver(struct target *t, const char **how) {
  int signo = t->req->reload->signo;
  const char *why = "its process is not visible here";
  if (t->pidfd >= 0) {
    *how = "host pid, pidfd";
    /* A process stopped by hand (not paused: Docker says so) would only
     * queue the signal. Through the engine nothing can be seen of this. */
    struct br_proc_stat st;
    char what[BR_DOCKER_NAME_MAX + 64];
    snprintf(what, sizeof what, "container %s: pid %ld", t->name.data, t->c.pid);
    if (br_proc_stat((pid_t)t->c.pid, &st) == 0 && br_reload_not_running_state(st.state, what, t->res))
      return true;
    if (syscall(SYS_pidfd_send_signal, t->pidfd, signo, NULL, 0) == 0)
      return false;
    if (errno == ESRCH) {
      say(t, BR_RELOAD_TRANSIENT, "container %s: its process %ld exited before the signal", t->name.data,
          t->c.pid);
      return true;
    }
    if (errno != EPERM) {
      say(t, BR_RELOAD_TRANSIENT, "container %s: cannot signal its process %ld: %s", t->name.data, t->c.pid,
          strerror(errno));
      return true;
    }
    /* Another user's process, and no CAP_KILL (the systemd unit's user in
     * the docker group): the engine may still signal it. */
    why = "this daemon may not signal its process (EPERM)";
  }
  *how = "Engine API kill";
  warn_api_kill_once(t, why);
  struct br_docker_answer ans;
  struct br_buf err, path;
  br_docker_answer_init(&ans);
  br_buf_init(&err, 4096);
  br_buf_init(&path, 512);
  br_buf_printf(&path, "/containers/%s/kill?signal=SIG%s", t->c.id, br_signal_name(signo));
  int rc = br_docker_request(t->socket.data, "POST", path.data, BR_DOCKER_REQUEST_TIMEOUT_MS, &ans, &err);
  bool decided = true;
  if (rc) {
    say(t, BR_RELOAD_TRANSIENT, "%s", err.data ? err.data : strerror(-rc));
  } else if (ans.status == 204 || ans.status == 200) {
    decided = false;
  } else if (ans.status == 404 || ans.status == 409) {
    say(t, BR_RELOAD_NOT_RUNNING, "sidecar not running: container %s stopped; it reads the file when it starts",
        t->name.data);
  } else {
    br_docker_answer_describe(&ans, &err);
    say(t, ans.status == 400 ? BR_RELOAD_PERMANENT : BR_RELOAD_TRANSIENT, "signalling container %s: %s",
        t->name.data, err.data);
  }
  br_docker_answer_free(&ans);
  br_buf_free(&err);
  br_buf_free(&path);
  return decided;
}

/* verify: the bytes the container sees at its path of the file are the
 * bytes on the host, which converge has just written (it holds the slug's
 * lock, so nobody of ours rewrote them since). */
static bool verify(struct target *t, const char *host_hash) {
  if (t->pidfd < 0 || !t->container_path.len) {
    say(t, BR_RELOAD_PERMANENT, "verify: cannot read the file as container %s sees it: %s", t->name.data,
        t->pidfd < 0 ? "its process is not visible to this daemon (run it in the host's pid namespace)"
                     : "no mount of the container holds the file");
    return true;
  }
  char path[PATH_MAX + 64], seen[BR_SHA256_HEX_LEN + 1];
  snprintf(path, sizeof path, "/proc/%ld/root%s", t->c.pid, t->container_path.data);
  int rc = br_reload_file_sha256(path, seen);
  if (!rc && !pidfd_alive(t->pidfd))
    rc = -ESRCH; /* what was read may have been another process's */
  if (rc == -EACCES || rc == -EPERM) {
    /* /proc/<pid>/root is the container's root only to a process allowed to
     * ptrace it. */
    say(t, BR_RELOAD_PERMANENT,
        "verify: may not read %s in container %s through /proc/%ld/root: run this daemon as root or give it "
        "CAP_SYS_PTRACE",
        t->container_path.data, t->name.data, t->c.pid);
    return true;
  }
  if (rc) {
    say(t, BR_RELOAD_TRANSIENT, "verify: cannot read %s in container %s: %s", t->container_path.data, t->name.data,
        rc == -ESRCH ? "its process exited" : strerror(-rc));
    return true;
  }
  if (strcmp(seen, host_hash) != 0) {
    say(t, BR_RELOAD_PERMANENT,
        "verify: container %s sees other bytes at %s (SHA-256 %.12s…) than this host wrote to %s (%.12s…): "
        "its mount is stale; restart the container",
        t->name.data, t->container_path.data, seen, t->req->file, host_hash);
    return true;
  }
  return false;
}

static int docker_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  struct target t = {.req = req, .res = res, .pidfd = -1};
  br_buf_init(&t.name, BR_DOCKER_NAME_MAX + 1);
  br_buf_init(&t.socket, PATH_MAX);
  br_buf_init(&t.container_path, PATH_MAX);
  struct br_buf err;
  br_buf_init(&err, 1024);
  const struct br_reload_config *rl = req->reload;
  char host_hash[BR_SHA256_HEX_LEN + 1] = "";
  const char *how = "";
  int64_t signalled_at = 0;

  if (br_reload_expand(req, rl->container, &t.name) || !t.name.data || !br_docker_name_valid(t.name.data)) {
    say(&t, BR_RELOAD_PERMANENT,
        "container template \"%s\" does not give a Docker container name "
        "([a-zA-Z0-9][a-zA-Z0-9_.-]*) for this bottle",
        rl->container);
    goto out;
  }
  if (br_docker_socket(getenv("DOCKER_HOST"), &t.socket, &err)) {
    say(&t, BR_RELOAD_PERMANENT, "%s", err.data);
    goto out;
  }
  if (inspect(&t))
    goto out;
  pin_process(&t);
  if (check_mounts(&t))
    goto out;
  if (t.c.paused) {
    /* Docker's kill would unpause it; whoever paused it decides when it runs. */
    say(&t, BR_RELOAD_DEFER,
        "container %s is paused; it is not signalled (that would unpause it) until "
        "it is unpaused",
        t.name.data);
    goto out;
  }
  int64_t started = t.pidfd >= 0 ? t.proc_started_ns : t.c.started_at_ns - STARTED_AT_MARGIN_NS;
  br_buf_reset(&err);
  br_buf_printf(&err, "container %s", t.name.data);
  if (br_reload_too_early(req, started, t.c.started_at_ns, err.data, res)) {
    if (res->status == BR_RELOAD_DEFER)
      goto out;
  } else {
    signalled_at = br_realtime_ns();
    if (deliver(&t, &how))
      goto out;
    say(&t, BR_RELOAD_OK, "sent SIG%s to container %s (%s)", br_signal_name(rl->signo), t.name.data, how);
  }
  if (rl->verify || rl->confirm_timeout_ms) {
    int rc = br_reload_file_sha256(req->file, host_hash);
    if (rc) {
      say(&t, BR_RELOAD_TRANSIENT, "cannot hash %s for verify/confirm: %s", req->file, strerror(-rc));
      goto out;
    }
  }
  if (rl->verify) {
    if (verify(&t, host_hash))
      goto out;
    br_buf_adds(&res->message, "; the container sees the new file");
  }
  if (rl->confirm_timeout_ms && res->status == BR_RELOAD_OK) {
    /* Lines from the write on count: pipelock's own watcher may have loaded
     * the file before the signal came (and then skips the signal's reload). */
    int64_t since = req->written_at_ns ? req->written_at_ns : signalled_at;
    int64_t waited_from = br_monotonic_ns();
    br_buf_reset(&err);
    bool bounded;
    unsigned budget = br_reload_confirm_budget(req, &bounded);
    int rc = br_docker_log_wait(t.socket.data, t.c.id, t.c.tty, since, host_hash, budget, &err);
    if (rc == -ETIMEDOUT && bounded) {
      res->confirm_late = true;
      br_buf_printf(&res->message, ", but its log did not confirm SHA-256 %.12s… within its %u ms settle time",
                    host_hash, budget);
    } else if (rc == -EPROTO) {
      say(&t, BR_RELOAD_PERMANENT, "confirm: container %s: %s", t.name.data, err.data);
    } else if (rc) {
      say(&t, BR_RELOAD_TRANSIENT, "confirm: signalled container %s (%s), but %s", t.name.data, how,
          err.data ? err.data : strerror(-rc));
    } else {
      res->confirmed = true;
      br_buf_printf(&res->message, "; its log confirmed SHA-256 %.12s… after %lld ms", host_hash,
                    (long long)((br_monotonic_ns() - waited_from) / 1000000));
    }
  }
out:
  if (t.pidfd >= 0)
    close(t.pidfd);
  br_docker_container_free(&t.c);
  br_buf_free(&t.name);
  br_buf_free(&t.socket);
  br_buf_free(&t.container_path);
  br_buf_free(&err);
  return 0;
}

const struct br_driver_ops br_driver_docker = {.name = "docker", .reload = docker_reload};
