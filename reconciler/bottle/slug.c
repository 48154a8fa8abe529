/* slug: naming and discovery of bottles. Reads the state root and
 * metadata.json; never writes. */
#include "reconciler/bottle/slug.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/yamldoc.h"

static const char name_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";

bool br_slug_valid(const char *name) {
  size_t len = strlen(name);
  return len > 0 && len <= BR_SLUG_MAX && strspn(name, name_chars) == len && name[0] != '.' && name[0] != '_' &&
         name[0] != '-';
}

int br_slugs_list(const char *state_dir, struct br_strv *slugs, struct br_buf *warnings) {
  DIR *d = opendir(state_dir);
  if (!d)
    return -errno;
  int rc = 0;
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    /* d_type saves a stat per slug; a symlinked slug dir (or a file system
     * that does not fill d_type in) is stat()ed, following the link. */
    struct stat st;
    if (e->d_type != DT_DIR && ((e->d_type != DT_LNK && e->d_type != DT_UNKNOWN) ||
                                fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISDIR(st.st_mode)))
      continue;
    if (!br_slug_valid(e->d_name)) {
      br_buf_adds(warnings, "state directory entry ");
      br_quote_excerpt(warnings, e->d_name, strlen(e->d_name), 40);
      br_buf_adds(warnings,
                  " ignored: not a valid slug, expected [A-Za-z0-9][A-Za-z0-9_.-]* of at most 128 characters\n");
      continue;
    }
    rc = br_strv_add(slugs, e->d_name);
  }
  closedir(d);
  br_strv_sort(slugs);
  return rc;
}

/* Docker Compose project names: lowercase letters, digits, '_' and '-',
 * starting with a letter or digit. */
static bool project_valid(const char *s) {
  size_t len = strlen(s);
  return len > 0 && len <= 128 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == len && s[0] != '_' &&
         s[0] != '-';
}

int br_slug_project(const char *state_dir, const char *slug, struct br_buf *project, struct br_buf *warnings) {
  struct br_buf path, text;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 65536);
  br_buf_reset(project);
  br_buf_printf(&path, "%s/%s/metadata.json", state_dir, slug);
  int rc = br_file_read(path.data, text.max, false, &text);
  const char *name = slug;
  json_t *doc = NULL;
  if (rc == 0) {
    json_error_t jerr;
    doc = json_loadb(text.data, text.len, 0, &jerr);
    json_t *value = doc ? json_object_get(doc, "compose_project") : NULL;
    if (!doc)
      br_buf_printf(warnings, "%s:%d:%d: %s, expected JSON; using the slug as compose project\n", path.data,
                    jerr.line, jerr.column, jerr.text);
    else if (value && (!json_is_string(value) || !project_valid(json_string_value(value))))
      br_buf_printf(warnings,
                    "%s: compose_project: expected a Docker Compose project name "
                    "([a-z0-9][a-z0-9_-]*); using the slug\n",
                    path.data);
    else if (value)
      name = json_string_value(value);
  } else if (rc != -ENOENT) {
    br_buf_printf(warnings, "%s: %s; using the slug as compose project\n", path.data, strerror(-rc));
  }
  rc = br_buf_adds(project, name);
  json_decref(doc);
  br_buf_free(&path);
  br_buf_free(&text);
  return rc;
}
