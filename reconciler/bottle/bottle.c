/* bottle: derives a bottle's record from the config and its state directory
 * (see bottle.h). Reads metadata.json; never writes. */
#include "reconciler/bottle/bottle.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

/* Docker Compose project names: lowercase letters, digits, '_' and '-',
 * starting with a letter or digit. */
static bool project_valid(const char *s) {
  size_t len = strlen(s);
  return len > 0 && len <= 128 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == len && s[0] != '_' &&
         s[0] != '-';
}

/* compose_project from metadata.json when present and valid, else the slug;
 * a present but invalid file is a line in warnings. */
static int read_project(struct br_bottle *b, struct br_buf *warnings) {
  struct br_buf path, text;
  br_buf_init(&path, PATH_MAX);
  br_buf_init(&text, 65536);
  br_buf_printf(&path, "%s/metadata.json", b->dir);
  int rc = br_file_read(path.data, text.max, false, &text);
  const char *name = b->slug;
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
  return b->project;
}

static int expanded(struct br_buf *scratch, char **out) {
  *out = strdup(br_buf_str(scratch));
  return *out ? 0 : -ENOMEM;
}

int br_bottle_derive(struct br_bottle *b, const struct br_config *cfg, const char *slug, struct br_buf *warnings) {
  memset(b, 0, sizeof *b);
  b->cfg = cfg;
  br_strv_init(&b->sources);
  if (!br_slug_valid(slug))
    return -EINVAL;
  snprintf(b->slug, sizeof b->slug, "%s", slug);
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  int rc = br_buf_printf(&path, "%s/%s", cfg->state_dir, slug);
  if (!rc)
    rc = expanded(&path, &b->dir);
  /* Only a path that names {project} needs metadata.json now. */
  const char *project = NULL;
  if (!rc && br_config_paths_use_project(cfg) && !(project = br_bottle_project(b, warnings)))
    rc = -ENOMEM;
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
  for (int s = 0; s < BR_SIDECAR_COUNT; s++)
    free(b->live[s]);
  br_strv_free(&b->sources);
  memset(b, 0, sizeof *b);
}

int br_bottle_expand(struct br_bottle *b, enum br_sidecar sidecar, const char *tmpl, const char *file,
                     struct br_buf *out, struct br_buf *warnings) {
  const char *project = br_bottle_project(b, warnings);
  if (!project)
    return -ENOMEM;
  br_buf_reset(out);
  return br_config_expand_sidecar(b->cfg, br_config_sidecar(b->cfg, sidecar), tmpl, b->slug, project, file, out);
}
