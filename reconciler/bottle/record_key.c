/* record_key: the key that signs the added-hosts records and the MAC it
 * makes (see record_key.h). */
#include "reconciler/bottle/record_key.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <nettle/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "reconciler/bottle/records.h"

#define KEY_NAME "record.key"
#define KEY_LEN BR_RECORD_KEY_LEN
#define MAC_HEX_LEN BR_RECORD_MAC_HEX_LEN

/* The key's directory, STATE/.reconciler, must be the daemon user's and
 * writable by no one else: whoever could write it could swap the records
 * beside the key, or the key itself. */
static int dir_trusted(const char *dir, const struct stat *st, struct br_buf *why) {
  if (st->st_uid != geteuid()) {
    br_buf_printf(why, "%s is owned by uid %u, not by the daemon's (%u)", dir, (unsigned)st->st_uid,
                  (unsigned)geteuid());
    return -EPERM;
  }
  if (st->st_mode & (S_IWGRP | S_IWOTH)) {
    br_buf_printf(why, "%s may be written by its group or others (mode %04o); chmod go-w it", dir,
                  (unsigned)(st->st_mode & 07777));
    return -EPERM;
  }
  return 0;
}

/* The key file: a regular file of the daemon's user (root), mode 0600,
 * one link (not linked in from elsewhere), KEY_LEN bytes. */
static int key_trusted(const char *file, const struct stat *st, struct br_buf *why) {
  int rc = 0;
  if (S_ISLNK(st->st_mode) && (rc = -ELOOP))
    br_buf_printf(why, "%s is a symlink, expected a regular file", file);
  else if (!S_ISREG(st->st_mode) && (rc = -EINVAL))
    br_buf_printf(why, "%s is not a regular file", file);
  else if (st->st_uid != geteuid() && (rc = -EPERM))
    br_buf_printf(why, "%s is owned by uid %u, not by the daemon's (%u)", file, (unsigned)st->st_uid,
                  (unsigned)geteuid());
  else if ((st->st_mode & 07777) != 0600 && (rc = -EPERM))
    br_buf_printf(why, "%s has mode %04o, expected 0600", file, (unsigned)(st->st_mode & 07777));
  else if (st->st_nlink != 1 && (rc = -EPERM))
    br_buf_printf(why, "%s has %lu links, expected 1", file, (unsigned long)st->st_nlink);
  else if (st->st_size != KEY_LEN && (rc = -EINVAL))
    br_buf_printf(why, "%s holds %lld bytes, expected %d", file, (long long)st->st_size, KEY_LEN);
  return rc;
}

/* The key as last read, per thread: a converge that adds a host reads the
 * record and writes it, and a worker converges bottle after bottle. Two
 * fstatat calls check that the directory and the file are still the ones
 * it was read from, and still trusted; reading it again would take five
 * calls more. */
static _Thread_local struct {
  bool valid;
  char dir[PATH_MAX];
  dev_t dir_dev, key_dev;
  ino_t dir_ino, key_ino;
  uint8_t key[KEY_LEN];
} key_cache;

static bool key_cached(const char *dir, const char *file, uint8_t key[KEY_LEN]) {
  struct stat dst, kst;
  struct br_buf ignored;
  br_buf_init(&ignored, 4096);
  bool hit =
      key_cache.valid && !strcmp(key_cache.dir, dir) && !fstatat(AT_FDCWD, dir, &dst, AT_SYMLINK_NOFOLLOW) &&
      !fstatat(AT_FDCWD, file, &kst, AT_SYMLINK_NOFOLLOW) && S_ISDIR(dst.st_mode) &&
      dst.st_dev == key_cache.dir_dev && dst.st_ino == key_cache.dir_ino && kst.st_dev == key_cache.key_dev &&
      kst.st_ino == key_cache.key_ino && !dir_trusted(dir, &dst, &ignored) && !key_trusted(file, &kst, &ignored);
  br_buf_free(&ignored);
  if (hit)
    memcpy(key, key_cache.key, KEY_LEN);
  else if (key_cache.valid) {
    explicit_bzero(key_cache.key, KEY_LEN);
    key_cache.valid = false;
  }
  return hit;
}

/* Reads the key through dirfd, checked before it is opened (a FIFO or a
 * device is not opened at all) and again as opened. */
static int key_read(int dirfd, const char *file, uint8_t key[KEY_LEN], struct stat *st, struct br_buf *why) {
  if (fstatat(dirfd, KEY_NAME, st, AT_SYMLINK_NOFOLLOW) < 0) {
    int rc = -errno;
    br_buf_printf(why, rc == -ENOENT ? "%s does not exist" : "%s: %s", file, strerror(errno));
    return rc;
  }
  int rc = key_trusted(file, st, why);
  if (rc)
    return rc;
  int fd = openat(dirfd, KEY_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    br_buf_printf(why, "%s: cannot open: %s", file, strerror(errno));
    return rc;
  }
  if (fstat(fd, st) < 0)
    rc = -errno;
  else
    rc = key_trusted(file, st, why);
  ssize_t n = 0;
  while (!rc && (n = pread(fd, key, KEY_LEN, 0)) < 0 && errno == EINTR)
    ;
  if (!rc && n != KEY_LEN) {
    rc = n < 0 ? -errno : -EIO;
    br_buf_printf(why, "%s: read: %s", file, n < 0 ? strerror(errno) : "short read");
  }
  close(fd);
  return rc;
}

/* Makes the key: random bytes in a temp file, fsync'd, then renamed to
 * KEY_NAME only if no other process or thread made one meanwhile (theirs
 * is then used), and the directory fsync'd, before any record is signed
 * with it. */
static int key_make(int dirfd, const char *file, struct br_buf *why) {
  uint8_t fresh[KEY_LEN];
  ssize_t got;
  while ((got = getrandom(fresh, KEY_LEN, 0)) < 0 && errno == EINTR)
    ;
  if (got != KEY_LEN) {
    int rc = got < 0 ? -errno : -EIO;
    br_buf_printf(why, "%s: no random bytes: %s", file, strerror(-rc));
    return rc;
  }
  char tmp[96];
  snprintf(tmp, sizeof tmp, "%s%ld.%ld.%s", BR_TMP_PREFIX, (long)getpid(), (long)gettid(), KEY_NAME);
  int rc = 0, fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    rc = -errno;
  if (!rc && fchmod(fd, 0600) < 0) /* whatever the umask */
    rc = -errno;
  if (!rc)
    rc = br_pwrite_all(fd, fresh, KEY_LEN, 0);
  if (!rc && fsync(fd) < 0)
    rc = -errno;
  explicit_bzero(fresh, sizeof fresh);
  if (fd >= 0)
    close(fd);
  if (!rc && renameat2(dirfd, tmp, dirfd, KEY_NAME, RENAME_NOREPLACE) < 0) {
    rc = -errno;
    if (rc == -EINVAL) /* a file system that cannot: a link does not replace either */
      rc = linkat(dirfd, tmp, dirfd, KEY_NAME, 0) < 0 ? -errno : 0;
    if (rc == -EEXIST)
      rc = 0; /* made by someone else meanwhile: that one is read */
  }
  if (fd >= 0)
    unlinkat(dirfd, tmp, 0); /* after the rename: ENOENT */
  if (!rc && fsync(dirfd) < 0)
    rc = -errno;
  if (rc)
    br_buf_printf(why, "%s: cannot create: %s", file, strerror(-rc));
  return rc;
}

/* The record key of state_dir into key; with create, made when missing.
 * Returns 0, or -errno with the reason in why (never the key). */
int br_record_key_load(const char *state_dir, bool create, uint8_t key[KEY_LEN], struct br_buf *why) {
  char dir[PATH_MAX], file[PATH_MAX + sizeof KEY_NAME];
  if ((size_t)snprintf(dir, sizeof dir, "%s/%s", state_dir, BR_RECORDS_DIR) >= sizeof dir) {
    br_buf_printf(why, "%s: path too long", state_dir);
    return -ENAMETOOLONG;
  }
  snprintf(file, sizeof file, "%s/%s", dir, KEY_NAME);
  if (key_cached(dir, file, key))
    return 0;
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirfd < 0) {
    int rc = -errno;
    br_buf_printf(why, "%s: cannot open: %s", dir, strerror(errno));
    return rc;
  }
  struct stat dst, kst;
  int rc = fstat(dirfd, &dst) < 0 ? -errno : 0;
  if (rc)
    br_buf_printf(why, "%s: %s", dir, strerror(-rc));
  else
    rc = dir_trusted(dir, &dst, why);
  struct br_buf first;
  br_buf_init(&first, 4096);
  if (!rc && (rc = key_read(dirfd, file, key, &kst, &first)) == -ENOENT && create) {
    if (!(rc = key_make(dirfd, file, why)))
      rc = key_read(dirfd, file, key, &kst, why);
  } else if (rc) {
    br_buf_adds(why, br_buf_str(&first));
  }
  br_buf_free(&first);
  close(dirfd);
  if (rc)
    return rc;
  snprintf(key_cache.dir, sizeof key_cache.dir, "%s", dir);
  key_cache.dir_dev = dst.st_dev;
  key_cache.dir_ino = dst.st_ino;
  key_cache.key_dev = kst.st_dev;
  key_cache.key_ino = kst.st_ino;
  memcpy(key_cache.key, key, KEY_LEN);
  key_cache.valid = true;
  return 0;
}

static void mac_field(struct hmac_sha256_ctx *ctx, const char *bytes, size_t len) {
  uint8_t be[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
  hmac_sha256_update(ctx, sizeof be, be);
  hmac_sha256_update(ctx, len, (const uint8_t *)bytes);
}

/* The MAC of a slug's host list, in hex: every field length-prefixed, so
 * that no two (slug, list) pairs give the same bytes. */
void br_record_mac(const uint8_t key[KEY_LEN], const char *slug, const struct br_strv *hosts,
                   char hex[MAC_HEX_LEN + 1]) {
  static const char domain[] = "bottle-reconciler added-hosts record v1";
  struct hmac_sha256_ctx ctx;
  hmac_sha256_set_key(&ctx, KEY_LEN, key);
  mac_field(&ctx, domain, sizeof domain - 1);
  mac_field(&ctx, slug, strlen(slug));
  uint8_t count[4] = {(uint8_t)(hosts->n >> 24), (uint8_t)(hosts->n >> 16), (uint8_t)(hosts->n >> 8),
                      (uint8_t)hosts->n};
  hmac_sha256_update(&ctx, sizeof count, count);
  for (size_t i = 0; i < hosts->n; i++)
    mac_field(&ctx, hosts->v[i], strlen(hosts->v[i]));
  uint8_t digest[SHA256_DIGEST_SIZE];
  hmac_sha256_digest(&ctx, sizeof digest, digest);
  explicit_bzero(&ctx, sizeof ctx);
  for (size_t i = 0; i < sizeof digest; i++)
    snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

/* Compares in time independent of where the first difference is. */
bool br_record_mac_equal(const char *a, const char *b) {
  unsigned char diff = 0;
  for (size_t i = 0; i < MAC_HEX_LEN; i++)
    diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}
