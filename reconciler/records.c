/* records: persistence of pending reloads and added pipelock hosts. Formats
 * are one-line text and a JSON list, so an operator can read them by hand. */
#include "reconciler/records.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"

static int record_path(struct br_buf *out, const char *state_dir, const char *kind, const char *slug,
                       const char *suffix) {
  br_buf_reset(out);
  return br_buf_printf(out, "%s/%s/%s/%s%s", state_dir, BR_RECORDS_DIR, kind, slug, suffix);
}

int br_records_init(const char *state_dir, struct br_buf *err) {
  static const char *const subdirs[] = {"", "/pending", "/added"};
  struct br_buf path;
  br_buf_init(&path, 4096);
  int rc = 0;
  for (size_t i = 0; i < 3 && !rc; i++) {
    br_buf_reset(&path);
    br_buf_printf(&path, "%s/%s%s", state_dir, BR_RECORDS_DIR, subdirs[i]);
    if (mkdir(path.data, 0750) < 0 && errno != EEXIST) {
      rc = -errno;
      br_buf_printf(err, "%s: cannot create: %s\n", path.data, strerror(errno));
    }
  }
  br_buf_free(&path);
  return rc;
}

int br_record_pending_set(const char *state_dir, const char *slug, const char *sidecar,
                          int64_t written_at_ns, struct br_buf *err) {
  struct br_buf path, text;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 64);
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".%s", sidecar);
  int rc = record_path(&path, state_dir, "pending", slug, suffix);
  if (!rc)
    rc = br_buf_printf(&text, "%" PRId64 "\n", written_at_ns);
  /* No fsync: the record is read only while the sidecar keeps running after
   * this process died, and the page cache outlives a process. A crash of the
   * machine restarts the sidecars too, and they read the live file then. Two
   * fsyncs per written file were a third of a converge's latency. */
  if (!rc)
    rc = br_file_write_atomic(path.data, text.data, text.len,
                              &(struct br_write_opts){.new_mode = 0640, .no_sync = true}, err);
  br_buf_free(&path);
  br_buf_free(&text);
  return rc;
}

int br_record_pending_get(const char *state_dir, const char *slug, const char *sidecar,
                          int64_t *written_at_ns) {
  struct br_buf path, text;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 64);
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".%s", sidecar);
  int found = 0;
  if (!record_path(&path, state_dir, "pending", slug, suffix) && !br_file_read(path.data, 64, true, &text)) {
    found = 1;
    *written_at_ns = strtoll(text.data, NULL, 10); /* unreadable: 0, which still reloads */
  }
  br_buf_free(&path);
  br_buf_free(&text);
  return found;
}

int br_record_pending_clear(const char *state_dir, const char *slug, const char *sidecar) {
  struct br_buf path;
  br_buf_init(&path, 4096);
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".%s", sidecar);
  int rc = record_path(&path, state_dir, "pending", slug, suffix);
  if (!rc && unlink(path.data) < 0 && errno != ENOENT)
    rc = -errno;
  br_buf_free(&path);
  return rc;
}

int br_record_added_get(const char *state_dir, const char *slug, struct br_strv *hosts) {
  struct br_buf path, text;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 4 * 1024 * 1024);
  int rc = record_path(&path, state_dir, "added", slug, ".json");
  if (!rc)
    rc = br_file_read(path.data, text.max, true, &text);
  if (rc == -ENOENT)
    rc = 0;
  else if (!rc) {
    json_t *list = json_loadb(text.data, text.len, 0, NULL);
    size_t i;
    json_t *item;
    if (!json_is_array(list))
      rc = -EINVAL;
    json_array_foreach(list, i, item) {
      if (json_is_string(item) && !rc)
        rc = br_strv_add_unique(hosts, json_string_value(item));
    }
    json_decref(list);
  }
  br_buf_free(&path);
  br_buf_free(&text);
  return rc;
}

int br_record_added_set(const char *state_dir, const char *slug, const struct br_strv *hosts,
                        struct br_buf *err) {
  struct br_buf path;
  br_buf_init(&path, 4096);
  json_t *list = json_array();
  for (size_t i = 0; i < hosts->n; i++)
    json_array_append_new(list, json_string(hosts->v[i]));
  char *text = json_dumps(list, JSON_INDENT(2));
  int rc = text ? record_path(&path, state_dir, "added", slug, ".json") : -ENOMEM;
  if (!rc)
    rc = br_file_write_atomic(path.data, text, strlen(text), &(struct br_write_opts){.new_mode = 0640}, err);
  free(text);
  json_decref(list);
  br_buf_free(&path);
  return rc;
}

void br_records_forget(const char *state_dir, const char *slug) {
  br_record_pending_clear(state_dir, slug, "pipelock");
  br_record_pending_clear(state_dir, slug, "egress");
  struct br_buf path;
  br_buf_init(&path, 4096);
  if (!record_path(&path, state_dir, "added", slug, ".json"))
    unlink(path.data);
  br_buf_free(&path);
}
