/* edit: the editor loop of `edit` (see edit.h). */
#include "reconciler/cli/edit.h"

#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "reconciler/bottle/change.h"

extern char **environ;

#define EDIT_MAX (1024u * 1024)
#define ERROR_MARK "# bottle-reconciler: "
#define ROUNDS_MAX 20 /* invalid saves before edit gives up (a script that never converges) */

/* Runs the operator's editor on path; its exit status, or -errno. */
static int run_editor(const char *path) {
  const char *editor = getenv("VISUAL");
  if (!editor || !*editor)
    editor = getenv("EDITOR");
  if (!editor || !*editor)
    editor = "vi";
  /* Through the shell, as crontab and git do: EDITOR may hold arguments. */
  char script[] = "exec $BR_EDITOR \"$1\"";
  setenv("BR_EDITOR", editor, 1);
  char *argv[] = {"sh", "-c", script, "sh", (char *)path, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
  if (rc)
    return -rc;
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -errno;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The text without the error lines a previous round put at its top. */
static void strip_errors(struct br_buf *text) {
  size_t skip = 0, mark = strlen(ERROR_MARK);
  while (text->len - skip >= mark && memcmp(text->data + skip, ERROR_MARK, mark) == 0) {
    const char *nl = memchr(text->data + skip, '\n', text->len - skip);
    skip = nl ? (size_t)(nl - text->data) + 1 : text->len;
  }
  memmove(text->data, text->data + skip, text->len - skip + 1);
  text->len -= skip;
}

/* Only blank lines and comments: the operator emptied it on purpose. */
static bool emptied(const struct br_buf *text) {
  const char *p = br_buf_str(text);
  while (*p) {
    p += strspn(p, " \t\r");
    if (*p == '#')
      p += strcspn(p, "\n");
    else if (*p && *p != '\n')
      return false;
    p += *p == '\n';
  }
  return true;
}

static int write_temp(const char *path, const struct br_buf *errors, const struct br_buf *text) {
  struct br_buf all;
  br_buf_init(&all, EDIT_MAX * 2);
  for (const char *p = br_buf_str(errors); *p;) {
    size_t n = strcspn(p, "\n");
    br_buf_printf(&all, ERROR_MARK "%.*s\n", (int)n, p);
    p += n + (p[n] == '\n');
  }
  br_buf_add(&all, br_buf_str(text), text->len);
  struct br_buf err;
  br_buf_init(&err, 4096);
  int rc = br_file_write_atomic(path, all.data, all.len,
                                &(struct br_write_opts){.new_mode = 0600, .no_sync = true}, &err);
  br_buf_free(&all);
  br_buf_free(&err);
  return rc;
}

static bool same(const struct br_buf *a, const struct br_buf *b) {
  return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

int br_edit_fragment(struct cli *cli, struct br_bottle *b, const char *name, struct br_change_outcome *o) {
  (void)cli;
  const char *dir = br_change_local_source(b);
  if (!dir) {
    br_buf_printf(&o->errors, "no source directory of %s lies in %s, and edit changes fragments only there\n",
                  b->slug, b->dir);
    return -EROFS;
  }
  struct br_buf original, text, last, errors, path;
  br_buf_init(&original, EDIT_MAX);
  br_buf_init(&text, EDIT_MAX * 2);
  br_buf_init(&last, EDIT_MAX * 2);
  br_buf_init(&errors, 256 * 1024);
  br_buf_init(&path, PATH_MAX);
  br_buf_printf(&path, "%s/%s", dir, name);
  int rc = br_file_read(path.data, EDIT_MAX, true, &original);
  if (rc == -ENOENT)
    rc = br_buf_printf(&original,
                       "# Routes of %s (bottle-reconciler edit). Save an empty file to remove it.\n"
                       "routes: []\n",
                       b->slug);
  const char *tmpdir = getenv("TMPDIR");
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s/br-edit-XXXXXX.yaml", tmpdir && *tmpdir ? tmpdir : "/tmp");
  int fd = rc ? -1 : mkstemps(tmp, 5);
  if (!rc && fd < 0)
    rc = -errno;
  if (fd >= 0)
    close(fd);
  if (!rc)
    rc = write_temp(tmp, &errors, &original);
  for (int round = 0; !rc; round++) {
    if (round == ROUNDS_MAX) {
      br_buf_add(&o->errors, errors.data, errors.len);
      br_buf_printf(&o->errors, "still invalid after %d saves; nothing was changed\n", ROUNDS_MAX);
      rc = -EINVAL;
      break;
    }
    int status = run_editor(tmp);
    if (status) {
      br_buf_printf(&o->errors, "the editor failed (%s %d); nothing was changed\n",
                    status < 0 ? "error" : "status", status < 0 ? -status : status);
      rc = -EINVAL;
      break;
    }
    br_buf_reset(&text);
    if ((rc = br_file_read(tmp, EDIT_MAX * 2, false, &text)))
      break;
    strip_errors(&text);
    if (same(&text, &original)) {
      o->unchanged = true;
      br_buf_adds(&o->notes, "no changes\n");
      break;
    }
    if (errors.len && same(&text, &last)) {
      br_buf_add(&o->errors, errors.data, errors.len); /* saved invalid twice alike: give up */
      rc = -EINVAL;
      break;
    }
    br_buf_reset(&errors);
    rc = emptied(&text) ? br_fragment_install(b, name, NULL, 0, o)
                        : br_fragment_install(b, name, text.data, text.len, o);
    if (rc != -EINVAL)
      break;
    /* Invalid: back to the editor with the errors on top. */
    br_buf_add(&errors, o->errors.data, o->errors.len);
    br_buf_reset(&o->errors);
    br_buf_reset(&last);
    br_buf_add(&last, text.data, text.len);
    rc = write_temp(tmp, &errors, &text);
  }
  unlink(tmp);
  br_buf_free(&original);
  br_buf_free(&text);
  br_buf_free(&last);
  br_buf_free(&errors);
  br_buf_free(&path);
  return rc;
}
