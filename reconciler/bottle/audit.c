/* audit: appends audit records. Opens the file for each batch, so a rotated
 * log (logrotate's create mode) is picked up without a signal. */
#include "reconciler/bottle/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"

json_t *br_audit_record(json_t *list, const char *slug, enum br_sidecar sidecar, const char *file) {
  char time[BR_TIME_TEXT_MAX];
  br_time_text(br_realtime_ns(), time, sizeof time);
  json_t *rec = json_pack("{s:s, s:s, s:s, s:s}", "time", time, "slug", slug, "sidecar", br_sidecar_name(sidecar),
                          "file", file);
  json_array_append_new(list, rec);
  return rec;
}

int br_audit_append(const char *path, const struct br_path_rule *rule, const json_t *records) {
  if (!json_array_size(records))
    return 0;
  int fd = br_open_under(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0640, rule);
  if (fd < 0)
    return fd;
  int rc = 0;
  size_t i;
  const json_t *rec;
  json_array_foreach(records, i, rec) {
    char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!line) {
      rc = -ENOMEM;
      break;
    }
    size_t len = strlen(line);
    line[len] = '\n'; /* json_dumps leaves room: the NUL becomes the newline */
    ssize_t n = write(fd, line, len + 1);
    if (n < 0)
      rc = -errno; /* ENOSPC says what to do; EIO would not */
    else if (n != (ssize_t)(len + 1))
      rc = -EIO;
    free(line);
  }
  close(fd);
  return rc;
}
