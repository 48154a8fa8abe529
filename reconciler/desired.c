/* desired: turns source directories into one slug's desired routes. Events
 * are only hints, so this reads every fragment again each time it runs. */
#include "reconciler/desired.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "reconciler/egress.h"
#include "reconciler/fragment.h"
#include "reconciler/merge.h"

void br_desired_init(struct br_desired *d) {
  d->managed = false;
  br_routes_init(&d->routes);
  br_strv_init(&d->sources);
  br_strv_init(&d->fragments);
  br_buf_init(&d->errors, 64 * 1024);
  br_buf_init(&d->warnings, 64 * 1024);
  d->hash[0] = '\0';
}

void br_desired_free(struct br_desired *d) {
  br_routes_free(&d->routes);
  br_strv_free(&d->sources);
  br_strv_free(&d->fragments);
  br_buf_free(&d->errors);
  br_buf_free(&d->warnings);
}

static void limits_of(const struct br_config *cfg, struct br_limits *limits) {
  br_limits_default(limits);
  limits->max_file_bytes = cfg->max_file_bytes;
  limits->max_routes = cfg->max_routes;
  limits->max_paths = cfg->max_paths;
}

/* Reads and parses the file at path; name is what messages call it. */
static int parse_file(const struct br_config *cfg, const char *name, const char *path,
                      struct br_routes *routes, struct br_buf *errors) {
  struct br_limits limits;
  limits_of(cfg, &limits);
  struct br_buf bytes;
  br_buf_init(&bytes, limits.max_file_bytes);
  int rc = br_file_read(path, limits.max_file_bytes, false, &bytes);
  if (rc == -EFBIG)
    br_buf_printf(errors, "%s:1:1: (file): larger than %zu bytes, expected a smaller fragment\n", name,
                  limits.max_file_bytes);
  else if (rc)
    br_buf_printf(errors, "%s: cannot read: %s\n", name, strerror(-rc));
  else
    rc = br_fragment_parse(name, bytes.data, bytes.len, &limits, routes, errors);
  br_buf_free(&bytes);
  return rc == -EFBIG || rc == -E2BIG ? -EINVAL : rc;
}

int br_desired_check_file(const struct br_config *cfg, const char *path, struct br_routes *routes,
                          struct br_buf *errors) {
  return parse_file(cfg, path, path, routes, errors);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b); /* byte order, whatever the locale */
}

/* Fragment names of one source directory, byte-ordered. */
static int list_fragments(const char *dir, struct br_strv *names) {
  DIR *d = opendir(dir);
  if (!d)
    return -errno;
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(d)))
    if (br_fragment_name_counts(e->d_name))
      rc = br_strv_add(names, e->d_name);
  closedir(d);
  if (names->n > 1)
    qsort(names->v, names->n, sizeof *names->v, cmp_names);
  return rc;
}

/* A symlinked fragment is followed only when it resolves inside its own
 * source directory (a ConfigMap's ..data layout); anything else could make a
 * bottle's routes come from a file its producers do not control. The source
 * directory's real path is worked out on the first symlinked fragment only
 * (source_real "" until then): realpath() costs a readlink per component,
 * and most sources hold plain files. */
static int resolve_fragment(const char *dir, char *source_real, const char *path, char *resolved,
                            struct br_buf *errors) {
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return -ENOENT; /* removed since the listing: not an error */
    br_buf_printf(errors, "%s: cannot stat: %s\n", path, strerror(errno));
    return -EINVAL;
  }
  if (!S_ISLNK(st.st_mode)) {
    if (!S_ISREG(st.st_mode)) {
      br_buf_printf(errors, "%s: not a regular file, expected a fragment file\n", path);
      return -EINVAL;
    }
    snprintf(resolved, PATH_MAX, "%s", path);
    return 0;
  }
  if (!source_real[0] && !realpath(dir, source_real)) {
    br_buf_printf(errors, "%s: cannot resolve its source directory: %s\n", path, strerror(errno));
    source_real[0] = '\0';
    return -EINVAL;
  }
  if (!realpath(path, resolved)) {
    if (errno == ENOENT)
      br_buf_printf(errors, "%s: dangling symlink, expected it to resolve to a fragment file\n", path);
    else
      br_buf_printf(errors, "%s: cannot resolve: %s\n", path, strerror(errno));
    return -EINVAL;
  }
  size_t n = strlen(source_real);
  if (strncmp(resolved, source_real, n) != 0 || resolved[n] != '/') {
    br_buf_printf(errors, "%s: symlink leads outside its source directory (to %s), "
                          "expected a link inside %s\n", path, resolved, source_real);
    return -EINVAL;
  }
  return 0;
}

static int load_source(const struct br_config *cfg, const char *dir, struct br_desired *d) {
  char source_real[PATH_MAX] = ""; /* resolve_fragment() fills it when it needs it */
  struct stat st;
  if (stat(dir, &st) < 0)
    return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
  if (!S_ISDIR(st.st_mode))
    return 0;
  d->managed = true;
  struct br_strv names;
  br_strv_init(&names);
  int rc = list_fragments(dir, &names);
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  for (size_t i = 0; !rc && i < names.n; i++) {
    br_buf_reset(&path);
    br_buf_printf(&path, "%s/%s", dir, names.v[i]);
    char resolved[PATH_MAX];
    int frc = resolve_fragment(dir, source_real, path.data, resolved, &d->errors);
    if (frc == -ENOENT)
      continue;
    struct br_routes routes;
    br_routes_init(&routes);
    if (!frc)
      frc = parse_file(cfg, path.data, resolved, &routes, &d->errors);
    if (!frc && !d->errors.len) {
      frc = br_merge_add(&d->routes, &routes, path.data, cfg->max_routes, &d->warnings);
      if (frc == -E2BIG) {
        br_buf_printf(&d->errors, "%s:1:1: routes: takes the slug past %zu distinct hosts, "
                                  "expected fewer routes across its fragments\n", path.data,
                      cfg->max_routes);
        frc = -EINVAL;
      }
    }
    br_routes_free(&routes);
    if (frc && frc != -EINVAL)
      rc = frc;
    if (!rc)
      rc = br_strv_add(&d->fragments, path.data);
  }
  br_buf_free(&path);
  br_strv_free(&names);
  return rc;
}

int br_desired_load(const struct br_config *cfg, const char *slug, const char *project,
                    struct br_desired *d) {
  struct br_buf dir;
  br_buf_init(&dir, PATH_MAX);
  int rc = 0;
  for (size_t i = 0; !rc && i < cfg->sources.n; i++) {
    br_buf_reset(&dir);
    rc = br_config_expand(cfg, cfg->sources.v[i], slug, project, &dir);
    if (!rc)
      rc = br_strv_add(&d->sources, dir.data);
    if (!rc)
      rc = load_source(cfg, dir.data, d);
  }
  br_buf_free(&dir);
  if (!rc && d->errors.len)
    rc = -EINVAL;
  if (rc) {
    br_routes_free(&d->routes); /* nothing of an invalid slug may be applied */
    return rc;
  }
  struct br_buf canonical;
  br_buf_init(&canonical, 256 * 1024 * 1024);
  rc = br_egress_render(&d->routes, NULL, &canonical);
  if (!rc)
    br_sha256_hex(canonical.data, canonical.len, d->hash);
  br_buf_free(&canonical);
  return rc;
}
