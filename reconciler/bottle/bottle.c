/* bottle: derives a bottle's record from the config and its state directory
 * (see bottle.h). Reads metadata.json; writes only the record of whose a
 * compose project is (through records.h). */
#include "reconciler/bottle/bottle.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "reconciler/bottle/records.h"

/* Docker Compose project names: lowercase letters, digits, '_' and '-',
 * starting with a letter or digit. */
static bool project_valid(const char *s) {
  size_t len = strlen(s);
  return len > 0 && len <= 128 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == len && s[0] != '_' &&
         s[0] != '-';
}

/* Sets b->refusal from a buffer (taking its text). */
static int refuse(struct br_bottle *b, struct br_buf *why) {
  free(b->refusal);
  b->refusal = br_buf_steal(why);
  br_buf_free(why);
  return b->refusal ? -EPERM : -ENOMEM;
}

/* A metadata.json that is a symlink (or reached through one) is refused,
 * never read: it could name any file the daemon, as root, may read, and a
 * message about it would quote that file. */
static int refuse_symlinked(struct br_bottle *b, const char *path, int rc, const struct br_path_rule *rule) {
  struct br_buf why;
  br_buf_init(&why, 2 * PATH_MAX);
  br_buf_printf(&why, "%s: ", path);
  br_path_describe_error(path, rc, rule, &why);
  br_buf_adds(&why, "; metadata.json is read through no symlink, expected a regular file in the bottle's "
                    "directory: its compose project is refused and no sidecar of this bottle is told");
  return refuse(b, &why);
}

/* compose_project from metadata.json when present and valid, else the slug;
 * a present but invalid file is a line in warnings, which never quotes the
 * file's text. */
static int read_project(struct br_bottle *b, struct br_buf *warnings) {
  struct br_buf path, text;
  br_buf_init(&path, PATH_MAX);
  br_buf_init(&text, 65536);
  br_buf_printf(&path, "%s/metadata.json", b->dir);
  const struct br_path_rule rule = br_config_path_rule(b->cfg);
  int rc = br_file_read_under(path.data, text.max, &rule, &text, NULL);
  const char *name = b->slug;
  json_t *doc = NULL;
  if (rc == -ELOOP) {
    rc = refuse_symlinked(b, path.data, rc, &rule);
    br_buf_free(&path);
    br_buf_free(&text);
    b->project_read = rc != -ENOMEM;
    return rc == -EPERM ? 0 : rc;
  }
  if (rc == 0) {
    json_error_t jerr;
    doc = json_loadb(text.data, text.len, 0, &jerr);
    json_t *value = doc ? json_object_get(doc, "compose_project") : NULL;
    if (!doc)
      br_buf_printf(warnings, "%s:%d:%d: not valid JSON, expected JSON; using the slug as compose project\n",
                    path.data, jerr.line, jerr.column);
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
  free(b->project);
  b->project = strdup(name);
  json_decref(doc);
  br_buf_free(&path);
  br_buf_free(&text);
  if (!b->project)
    return -ENOMEM;
  b->project_read = true;
  return 0;
}

const char *br_bottle_project(struct br_bottle *b, struct br_buf *warnings) {
  if (!b->project_read && read_project(b, warnings))
    return NULL;
  return b->refusal ? NULL : b->project;
}

/* Whether bottle slug (not b) exists and names project now: a record of it
 * as project's bottle holds only then. */
static bool still_holds(const struct br_bottle *b, const char *slug, const char *project) {
  struct br_bottle holder;
  struct br_buf ignored;
  br_buf_init(&ignored, 64 * 1024);
  bool holds = false;
  if (!br_bottle_derive(&holder, b->cfg, slug, &ignored)) {
    struct stat st;
    const char *name =
        lstat(holder.dir, &st) == 0 && S_ISDIR(st.st_mode) ? br_bottle_project(&holder, &ignored) : NULL;
    holds = name && strcmp(name, project) == 0;
  }
  br_bottle_free(&holder);
  br_buf_free(&ignored);
  return holds;
}

static int refuse_foreign(struct br_bottle *b, const char *project, const char *owner, const char *how) {
  struct br_buf why;
  br_buf_init(&why, 4 * PATH_MAX);
  br_buf_printf(&why,
                "%s/metadata.json: compose_project \"%s\" belongs to bottle %s (%s), and its containers are "
                "that bottle's sidecars; one compose project belongs to one bottle: give %s a project of its "
                "own. Nothing of %s is written or signalled",
                b->dir, project, owner, how, b->slug, b->slug);
  return refuse(b, &why);
}

int br_bottle_project_owned(struct br_bottle *b, bool claim, struct br_buf *warnings, struct br_buf *err) {
  const char *project = br_bottle_project(b, warnings);
  if (!project)
    return b->refusal ? -EPERM : -ENOMEM;
  if (strcmp(project, b->slug) == 0)
    return 0;
  const char *state_dir = b->cfg->state_dir;
  struct br_buf other;
  br_buf_init(&other, PATH_MAX);
  struct stat st;
  /* Another bottle's default project is its slug, whether or not it has run. */
  bool slug_taken = !br_buf_printf(&other, "%s/%s", state_dir, project) && lstat(other.data, &st) == 0 &&
                    (S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode));
  int rc = slug_taken ? refuse_foreign(b, project, project, "it is that bottle's slug, its default project") : 0;
  char holder[BR_SLUG_MAX + 1] = "";
  int held = rc ? 0 : br_record_project_holder(state_dir, project, holder, sizeof holder);
  br_buf_reset(&other);
  br_buf_printf(&other, "its metadata.json names it, and %s/%s/projects/%s records it as that bottle's", state_dir,
                BR_RECORDS_DIR, project);
  if (!rc && !held && strcmp(holder, b->slug) != 0 && still_holds(b, holder, project))
    rc = refuse_foreign(b, project, holder, other.data);
  else if (!rc && held && held != -ENOENT && held != -EINVAL)
    br_buf_printf(err, "%s/%s/projects/%s: cannot read: %s\n", state_dir, BR_RECORDS_DIR, project,
                  strerror(-(rc = held)));
  else if (!rc && claim && (held || strcmp(holder, b->slug) != 0))
    rc = br_record_project_claim(state_dir, project, b->slug, held != -ENOENT, err);
  br_buf_free(&other);
  return rc == -EEXIST ? -EAGAIN : rc; /* another bottle recorded it just now: look again */
}

static int expanded(struct br_buf *scratch, char **out) {
  *out = strdup(br_buf_str(scratch));
  return *out ? 0 : -ENOMEM;
}

int br_bottle_derive(struct br_bottle *b, const struct br_config *cfg, const char *slug, struct br_buf *warnings) {
  memset(b, 0, sizeof *b);
  b->cfg = cfg;
  b->slug = "";
  br_strv_init(&b->sources);
  if (!br_slug_valid(slug))
    return -EINVAL;
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  int rc = br_buf_printf(&path, "%s/%s", cfg->state_dir, slug);
  if (!rc)
    rc = expanded(&path, &b->dir);
  if (!rc)
    b->slug = b->dir + path.len - strlen(slug);
  /* Only a path that names {project} needs metadata.json now. */
  const char *project = NULL;
  if (!rc && br_config_paths_use_project(cfg) && !(project = br_bottle_project(b, warnings)))
    rc = b->refusal ? -EPERM : -ENOMEM;
  for (size_t i = 0; !rc && i < cfg->sources.n; i++) {
    br_buf_reset(&path);
    if (!(rc = br_config_expand(cfg, cfg->sources.v[i], slug, project, &path)))
      rc = br_strv_add(&b->sources, path.data);
  }
  for (int s = 0; !rc && s < BR_SIDECAR_COUNT; s++) {
    const struct br_sidecar_config *sc = br_config_sidecar(cfg, (enum br_sidecar)s);
    br_buf_reset(&path);
    if (!(rc = br_config_expand_sidecar(cfg, sc, sc->file, slug, project, NULL, &path)))
      rc = expanded(&path, &b->live[s]);
  }
  br_buf_free(&path);
  return rc;
}

void br_bottle_free(struct br_bottle *b) {
  free(b->dir);
  free(b->project);
  free(b->refusal);
  for (int s = 0; s < BR_SIDECAR_COUNT; s++)
    free(b->live[s]);
  br_strv_free(&b->sources);
  memset(b, 0, sizeof *b);
  b->slug = "";
}

int br_bottle_expand(struct br_bottle *b, enum br_sidecar sidecar, const char *tmpl, const char *file,
                     struct br_buf *out, struct br_buf *warnings) {
  /* metadata.json is read only for a template that names the project: a
   * pidfile's usually does not, and the daemon expands one per bottle. */
  const char *project = NULL;
  if (strstr(tmpl, "{project}") && !(project = br_bottle_project(b, warnings)))
    return b->refusal ? -EPERM : -ENOMEM;
  br_buf_reset(out);
  return br_config_expand_sidecar(b->cfg, br_config_sidecar(b->cfg, sidecar), tmpl, b->slug, project, file, out);
}
