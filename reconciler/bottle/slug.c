/* slug: naming and discovery of bottles. Reads the state root; never
 * writes. */
#include "reconciler/bottle/slug.h"

#include <dirent.h>
#include <errno.h>
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
