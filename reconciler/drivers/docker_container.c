/* docker_container: inspect answers, RFC 3339 times, mountinfo lines and
 * container names as values. Pure functions only: the driver does the I/O. */
#include "reconciler/drivers/docker_container.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- inspect ------------------------------------------------------------ */

static const char *json_str(json_t *obj, const char *key) { return json_string_value(json_object_get(obj, key)); }

static int mounts_parse(json_t *list, struct br_docker_container *c) {
  size_t n = json_array_size(list);
  if (!n)
    return 0;
  if (!(c->mounts = calloc(n, sizeof *c->mounts)))
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    json_t *m = json_array_get(list, i);
    const char *type = json_str(m, "Type"), *source = json_str(m, "Source"),
               *destination = json_str(m, "Destination");
    if (!source || !destination || source[0] != '/' || destination[0] != '/')
      continue; /* tmpfs and the like have no host side; both paths are absolute */
    struct br_docker_mount *out = &c->mounts[c->n_mounts];
    if (!(out->type = strdup(type ? type : "")) || !(out->source = strdup(source)) ||
        !(out->destination = strdup(destination))) {
      free(out->type);
      free(out->source);
      return -ENOMEM;
    }
    c->n_mounts++;
  }
  return 0;
}

int br_docker_container_parse(const char *text, size_t len, struct br_docker_container *c, struct br_buf *err) {
  memset(c, 0, sizeof *c);
  json_error_t jerr;
  json_t *doc = json_loadb(text, len, 0, &jerr);
  if (!doc) {
    br_buf_printf(err, "inspect answer is not JSON: %s", jerr.text);
    return -EINVAL;
  }
  int rc = -EINVAL;
  json_t *state = json_object_get(doc, "State"), *config = json_object_get(doc, "Config");
  json_t *host = json_object_get(doc, "HostConfig");
  const char *id = json_str(doc, "Id"), *name = json_str(doc, "Name");
  const char *started = json_str(state, "StartedAt");
  json_t *pid = json_object_get(state, "Pid");
  if (!id || strlen(id) != BR_DOCKER_ID_LEN || strspn(id, "0123456789abcdef") != BR_DOCKER_ID_LEN) {
    br_buf_adds(err, "inspect answer has no container Id");
    goto out;
  }
  if (!json_is_object(state) || !json_is_integer(pid) || !started) {
    br_buf_adds(err, "inspect answer has no State with Pid and StartedAt");
    goto out;
  }
  memcpy(c->id, id, sizeof c->id);
  if (name && *name == '/')
    name++;
  snprintf(c->name, sizeof c->name, "%s", name ? name : "");
  c->running = json_is_true(json_object_get(state, "Running"));
  c->paused = json_is_true(json_object_get(state, "Paused"));
  c->restarting = json_is_true(json_object_get(state, "Restarting"));
  c->pid = (long)json_integer_value(pid);
  if (br_rfc3339_parse(started, &c->started_at_ns)) {
    br_buf_printf(err, "inspect answer has a malformed State.StartedAt \"%.40s\"", started);
    goto out;
  }
  const char *stop = json_str(config, "StopSignal");
  snprintf(c->stop_signal, sizeof c->stop_signal, "%s", stop ? stop : "");
  c->tty = json_is_true(json_object_get(config, "Tty"));
  const char *policy = json_str(json_object_get(host, "RestartPolicy"), "Name");
  if (policy && strcmp(policy, "no") != 0)
    snprintf(c->restart_policy, sizeof c->restart_policy, "%s", policy);
  rc = mounts_parse(json_object_get(doc, "Mounts"), c);
out:
  json_decref(doc);
  return rc;
}

void br_docker_container_free(struct br_docker_container *c) {
  for (size_t i = 0; i < c->n_mounts; i++) {
    free(c->mounts[i].type);
    free(c->mounts[i].source);
    free(c->mounts[i].destination);
  }
  free(c->mounts);
  memset(c, 0, sizeof *c);
}

/* ---- RFC 3339 ----------------------------------------------------------- */

static bool digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int br_rfc3339_parse(const char *s, int64_t *ns) {
  int year, month, day, hour, minute, second;
  if (!s || strlen(s) < 20 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
      !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &hour) || s[13] != ':' ||
      !digits(s + 14, 2, &minute) || s[16] != ':' || !digits(s + 17, 2, &second))
    return -EINVAL;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > mdays[month - 1] || (month == 2 && day == 29 && !leap) ||
      hour > 23 || minute > 59 || second > 60)
    return -EINVAL;
  const char *p = s + 19;
  int64_t frac = 0;
  if (*p == '.') {
    int n = 0;
    for (p++; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 9)
        frac = frac * 10 + (*p - '0');
    if (n == 0 || n > 9)
      return -EINVAL;
    for (; n < 9; n++)
      frac *= 10;
  }
  int64_t offset_s = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om;
    if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
      return -EINVAL;
    offset_s = (*p == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
    p += 6;
  } else {
    return -EINVAL;
  }
  if (*p)
    return -EINVAL;
  /* int64 nanoseconds reach the year 2262; Docker's "never" is year 1. */
  if (year < 1970 || year > 2261) {
    if (year > 2261)
      return -EINVAL;
    *ns = 0;
    return 0;
  }
  int64_t secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  *ns = secs < 0 ? 0 : secs * 1000000000 + frac;
  return 0;
}

/* ---- mounts ------------------------------------------------------------- */

const struct br_docker_mount *br_docker_mount_for(const struct br_docker_container *c, const char *file,
                                                  bool *exact, struct br_buf *container_path) {
  const struct br_docker_mount *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; i < c->n_mounts; i++) {
    const struct br_docker_mount *m = &c->mounts[i];
    if (strcmp(m->type, "bind") != 0 && strcmp(m->type, "volume") != 0)
      continue;
    size_t n = strlen(m->source);
    while (n > 1 && m->source[n - 1] == '/')
      n--;
    bool holds =
        strncmp(file, m->source, n) == 0 && (file[n] == '\0' || file[n] == '/' || (n == 1 && m->source[0] == '/'));
    if (holds && (!best || n >= best_len)) {
      best = m;
      best_len = n;
    }
  }
  if (!best)
    return NULL;
  if (exact)
    *exact = file[best_len] == '\0';
  if (container_path) {
    br_buf_reset(container_path);
    const char *rest = best_len == 1 ? file : file + best_len; /* a mount of "/" */
    size_t dlen = strlen(best->destination);
    while (dlen > 1 && best->destination[dlen - 1] == '/')
      dlen--;
    if (dlen == 1 && *rest)
      dlen = 0; /* mounted on the container's "/": the rest starts with "/" */
    br_buf_add(container_path, best->destination, dlen);
    br_buf_adds(container_path, rest);
  }
  return best;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static int unescape(const char *s, size_t n, struct br_buf *out) {
  br_buf_reset(out);
  int rc = br_buf_add(out, "", 0);
  for (size_t i = 0; i < n && !rc; i++) {
    if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' &&
        s[i + 3] >= '0' && s[i + 3] <= '7') {
      char c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      rc = br_buf_add(out, &c, 1);
      i += 3;
    } else {
      rc = br_buf_add(out, &s[i], 1);
    }
  }
  return rc;
}

int br_mountinfo_root(const char *text, size_t len, const char *mount_point, struct br_buf *root) {
  struct br_buf field;
  br_buf_init(&field, 8192);
  int rc = -ENOENT;
  const char *end = text + len;
  for (const char *line = text; line < end;) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    const char *eol = nl ? nl : end;
    /* "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS ..." */
    const char *f[5];
    size_t flen[5];
    const char *p = line;
    int k = 0;
    for (; k < 5 && p < eol; k++) {
      while (p < eol && *p == ' ')
        p++;
      f[k] = p;
      while (p < eol && *p != ' ')
        p++;
      flen[k] = (size_t)(p - f[k]);
    }
    if (eol > line && (k < 5 || flen[4] == 0)) {
      rc = -EINVAL;
      break;
    }
    if (k == 5) {
      int urc = unescape(f[4], flen[4], &field);
      if (urc) {
        rc = urc;
        break;
      }
      if (strcmp(field.data, mount_point) == 0) {
        /* Later lines are mounted on top of earlier ones: keep looking. */
        if ((urc = unescape(f[3], flen[3], root))) {
          rc = urc;
          break;
        }
        rc = 0;
      }
    }
    line = nl ? nl + 1 : end;
  }
  br_buf_free(&field);
  return rc;
}

bool br_mount_root_deleted(const char *root) {
  size_t n = strlen(root), m = strlen("//deleted");
  return n >= m && strcmp(root + n - m, "//deleted") == 0;
}

/* ---- names -------------------------------------------------------------- */

bool br_docker_name_valid(const char *name) {
  static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  size_t n = strlen(name);
  return n > 0 && n <= BR_DOCKER_NAME_MAX && strspn(name, alnum) > 0 &&
         strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

const struct br_sidecar_config *br_docker_sidecar_named(const struct br_config *cfg, const char *slug,
                                                        const char *project, const char *name) {
  const struct br_sidecar_config *sidecars[] = {&cfg->pipelock, &cfg->egress};
  const struct br_sidecar_config *found = NULL;
  struct br_buf expanded;
  br_buf_init(&expanded, BR_DOCKER_NAME_MAX + 1);
  for (size_t i = 0; i < 2 && !found; i++) {
    const struct br_reload_config *rl = &sidecars[i]->reload;
    if (rl->driver != BR_DRIVER_DOCKER || !rl->container)
      continue;
    br_buf_reset(&expanded);
    if (!br_config_expand_sidecar(cfg, sidecars[i], rl->container, slug, project, NULL, &expanded) &&
        expanded.data && strcmp(expanded.data, name) == 0)
      found = sidecars[i];
  }
  br_buf_free(&expanded);
  return found;
}

bool br_docker_in_use(const struct br_config *cfg) {
  return cfg->pipelock.reload.driver == BR_DRIVER_DOCKER || cfg->egress.reload.driver == BR_DRIVER_DOCKER;
}
