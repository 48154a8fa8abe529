/* raw_limit: the benchmark's floor. For each slug named on stdin it does the
 * I/O a converge of a changed bottle must do, at the daemon's durability, and
 * nothing else: no watcher, no parsing beyond a memcmp, no records, no logs.
 *
 *   br-bench-raw-limit [-j THREADS] STATE_DIR PIPELOCK_BYTES_FILE < slugs
 *
 * Per slug: read STATE/SLUG/routes.d/bench.json (a fragment the harness wrote
 * in the canonical egress form, so it is also the egress file's bytes) and
 * PIPELOCK_BYTES_FILE (the pipelock file the harness predicts). Read the live
 * pipelock file; if its bytes differ, replace it (temp file, write, fsync,
 * rename, fsync of the directory, as br_file_write_atomic does) and kill(2)
 * the pid in STATE/SLUG/run/pipelock.pid with SIGHUP. Then the same for the
 * live egress file and egress.pid. Slugs are shared out to THREADS workers
 * (default 4, the daemon's default). On end of input it waits for the work,
 * prints "SLUGS slugs, WRITES writes, SIGNALS signals, ERRORS errors" on
 * stderr and exits 0 (1 when a slug failed). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE (16u << 20)
#define MAX_THREADS 256
#define SLUG_MAX 128

struct bytes {
  char *data;
  size_t len;
};

struct job {
  struct job *next;
  char slug[SLUG_MAX + 2];
};

static const char *state_dir;
static const char *pipelock_bytes_file;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t nonempty = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static bool input_done;

static atomic_uint slugs_done, writes, signals_sent, errors;

/* Whole file into b (replacing what it held). Returns 0 or -errno. */
static int read_file(const char *path, struct bytes *b) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_size > (off_t)MAX_FILE) {
    int rc = errno ? -errno : -EFBIG;
    close(fd);
    return rc;
  }
  char *data = realloc(b->data, (size_t)st.st_size + 1);
  if (!data) {
    close(fd);
    return -ENOMEM;
  }
  b->data = data;
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, b->data + len, (size_t)st.st_size + 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int rc = -errno;
      close(fd);
      return rc;
    }
    if (n == 0 || (len += (size_t)n) == (size_t)st.st_size + 1)
      break; /* a file that grew meanwhile only makes the memcmp fail */
  }
  b->len = len;
  close(fd);
  return 0;
}

/* The durability br_file_write_atomic gives: the data is on disk before the
 * rename, the rename is on disk before we return. Like the daemon, it holds
 * the replaced file (*replaced, an O_PATH descriptor) so that freeing its
 * blocks (a wait for the device on a file system mounted with discard)
 * happens when the caller closes it, after the signals, not in rename(). */
static int write_atomic(const char *dir, const char *base, const struct bytes *b, int *replaced) {
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return -errno;
  char tmp[64];
  snprintf(tmp, sizeof tmp, ".raw-tmp.%ld.%lx", (long)getpid(), (unsigned long)pthread_self());
  int rc = 0;
  int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = -errno;
    close(dirfd);
    return rc;
  }
  size_t off = 0;
  while (!rc && off < b->len) {
    ssize_t n = write(fd, b->data + off, b->len - off);
    if (n < 0 && errno != EINTR)
      rc = -errno;
    else if (n > 0)
      off += (size_t)n;
  }
  if (!rc && fsync(fd) < 0)
    rc = -errno;
  close(fd);
  *replaced = rc ? -1 : openat(dirfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (!rc && renameat(dirfd, tmp, dirfd, base) < 0)
    rc = -errno;
  if (rc && *replaced >= 0) {
    close(*replaced);
    *replaced = -1;
  }
  if (rc)
    unlinkat(dirfd, tmp, 0);
  else if (fsync(dirfd) < 0)
    rc = -errno;
  close(dirfd);
  return rc;
}

static int signal_pidfile(const char *path) {
  char text[32];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0)
    return -EINVAL;
  text[n] = '\0';
  long pid = strtol(text, NULL, 10);
  if (pid <= 1)
    return -EINVAL;
  if (kill((pid_t)pid, SIGHUP) < 0)
    return -errno;
  atomic_fetch_add(&signals_sent, 1);
  return 0;
}

/* One sidecar: live file in STATE/SLUG/SUBDIR/BASE, pidfile STATE/SLUG/run/NAME.pid. */
static int converge_file(const char *slug, const char *subdir, const char *base, const char *name,
                         const struct bytes *want, struct bytes *scratch, int *replaced) {
  char dir[4096], path[8192];
  snprintf(dir, sizeof dir, "%s/%s/%s", state_dir, slug, subdir);
  snprintf(path, sizeof path, "%s/%s", dir, base);
  int rc = read_file(path, scratch);
  if (rc == 0 && scratch->len == want->len && memcmp(scratch->data, want->data, want->len) == 0)
    return 0;
  if (rc && rc != -ENOENT)
    return rc;
  if ((rc = write_atomic(dir, base, want, replaced)))
    return rc;
  atomic_fetch_add(&writes, 1);
  snprintf(path, sizeof path, "%s/%s/run/%s.pid", state_dir, slug, name);
  return signal_pidfile(path);
}

static void converge_slug(const char *slug, struct bytes *fragment, struct bytes *pipelock,
                          struct bytes *scratch) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/routes.d/bench.json", state_dir, slug);
  int rc = read_file(path, fragment);
  if (!rc)
    rc = read_file(pipelock_bytes_file, pipelock);
  /* Pipelock first, then egress: the order the daemon keeps. */
  int replaced[2] = {-1, -1};
  if (!rc)
    rc = converge_file(slug, "pipelock", "pipelock.yaml", "pipelock", pipelock, scratch, &replaced[0]);
  if (!rc)
    rc = converge_file(slug, "egress", "egress_routes.yaml", "egress", fragment, scratch, &replaced[1]);
  for (int i = 0; i < 2; i++)
    if (replaced[i] >= 0)
      close(replaced[i]);
  if (rc) {
    atomic_fetch_add(&errors, 1);
    fprintf(stderr, "br-bench-raw-limit: %s: %s\n", slug, strerror(-rc));
  }
  atomic_fetch_add(&slugs_done, 1);
}

static void *worker(void *arg) {
  (void)arg;
  struct bytes fragment = {0}, pipelock = {0}, scratch = {0};
  for (;;) {
    pthread_mutex_lock(&lock);
    while (!head && !input_done)
      pthread_cond_wait(&nonempty, &lock);
    struct job *job = head;
    if (job && !(head = job->next))
      tail = NULL;
    pthread_mutex_unlock(&lock);
    if (!job)
      break;
    converge_slug(job->slug, &fragment, &pipelock, &scratch);
    free(job);
  }
  free(fragment.data);
  free(pipelock.data);
  free(scratch.data);
  return NULL;
}

int main(int argc, char **argv) {
  long threads = 4;
  int c;
  while ((c = getopt(argc, argv, "j:")) != -1) {
    char *end;
    if (c != 'j' || (threads = strtol(optarg, &end, 10), *end) || threads < 1 || threads > MAX_THREADS) {
      fputs("usage: br-bench-raw-limit [-j THREADS] STATE_DIR PIPELOCK_BYTES_FILE < slugs\n", stderr);
      return 2;
    }
  }
  if (argc - optind != 2) {
    fputs("usage: br-bench-raw-limit [-j THREADS] STATE_DIR PIPELOCK_BYTES_FILE < slugs\n", stderr);
    return 2;
  }
  state_dir = argv[optind];
  pipelock_bytes_file = argv[optind + 1];
  pthread_t tids[MAX_THREADS];
  for (long i = 0; i < threads; i++)
    if (pthread_create(&tids[i], NULL, worker, NULL)) {
      fputs("br-bench-raw-limit: cannot start a thread\n", stderr);
      return 1;
    }
  char line[SLUG_MAX + 2];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    struct job *job = calloc(1, sizeof *job);
    if (!line[0] || !job) {
      free(job);
      continue;
    }
    snprintf(job->slug, sizeof job->slug, "%s", line);
    pthread_mutex_lock(&lock);
    if (tail)
      tail->next = job;
    else
      head = job;
    tail = job;
    pthread_cond_signal(&nonempty);
    pthread_mutex_unlock(&lock);
  }
  pthread_mutex_lock(&lock);
  input_done = true;
  pthread_cond_broadcast(&nonempty);
  pthread_mutex_unlock(&lock);
  for (long i = 0; i < threads; i++)
    pthread_join(tids[i], NULL);
  fprintf(stderr, "%u slugs, %u writes, %u signals, %u errors\n", atomic_load(&slugs_done), atomic_load(&writes),
          atomic_load(&signals_sent), atomic_load(&errors));
  return atomic_load(&errors) ? 1 : 0;
}
