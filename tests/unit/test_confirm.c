/* Unit tests for reconciler/drivers/confirm: which report of a sidecar
 * confirms a reload (its status file's sha256; the latest matching line of
 * its log, whatever came before it) and what an unconfirmed one says. Runs
 * on files in a fresh temporary directory, with short timeouts. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/sha256.h"
#include "reconciler/drivers/confirm.h"

static char dir[64], live[128], log_path[128], status_path[128];
static char new_hash[BR_SHA256_HEX_LEN + 1], old_hash[BR_SHA256_HEX_LEN + 1];

static void put(const char *path, const char *mode, const char *text) {
  FILE *f = fopen(path, mode);
  CHECK(f != NULL);
  if (!f)
    return;
  fputs(text, f);
  fclose(f);
}

/* A line as the test stand-in writes it: "TIME EVENT HASH STATUS". */
static void log_line(const char *mode, const char *hash, const char *status) {
  char line[256];
  snprintf(line, sizeof line, "1.000000000 reload %s %s\n", hash, status);
  put(log_path, mode, line);
}

/* Runs a confirm against the files; returns the result's status and leaves
 * its message in *message (the caller frees it). */
static enum br_reload_status confirm(const struct br_reload_config *rl, bool *confirmed, char **message) {
  struct br_config cfg;
  CHECK(br_config_defaults(&cfg) == 0);
  struct br_reload_request req = {
      .config = &cfg, .reload = rl, .sidecar = BR_SIDECAR_EGRESS, .slug = "alpha", .file = live};
  struct br_reload_result res;
  br_reload_result_init(&res);
  br_buf_adds(&res.message, "sent SIGHUP to pid 1234");
  CHECK(br_confirm_configured(&req));
  CHECK(br_confirm_reload(&req, &res) == 0);
  *confirmed = res.confirmed;
  *message = strdup(br_buf_str(&res.message));
  enum br_reload_status status = res.status;
  br_reload_result_free(&res);
  br_config_free(&cfg);
  return status;
}

static void expect(const struct br_reload_config *rl, bool want_confirmed, const char *want_in_message) {
  bool confirmed = false;
  char *message = NULL;
  enum br_reload_status status = confirm(rl, &confirmed, &message);
  CHECK(confirmed == want_confirmed);
  CHECK(status == (want_confirmed ? BR_RELOAD_OK : BR_RELOAD_TRANSIENT));
  if (!strstr(message, want_in_message)) {
    fprintf(stderr, "message \"%s\"\n  lacks \"%s\"\n", message, want_in_message);
    check_failures++;
  }
  free(message);
}

static void *append_later(void *arg) {
  (void)arg;
  struct timespec ts = {.tv_nsec = 50 * 1000000};
  nanosleep(&ts, NULL);
  log_line("a", new_hash, "ok");
  return NULL;
}

static void test_log(void) {
  struct br_reload_config rl = {
      .confirm_log_file = log_path, .confirm_match = " {sha256} ok", .confirm_timeout_ms = 60};
  char want[512];

  /* No log yet. */
  snprintf(want, sizeof want,
           "but egress did not confirm sha256 %s within 60 ms; it reports nothing: %s: ", new_hash, log_path);
  expect(&rl, false, want);

  /* A refused load of the new bytes is no confirmation: the match says "ok". */
  log_line("w", old_hash, "ok");
  log_line("a", new_hash, "invalid parse error");
  snprintf(want, sizeof want, "it reports sha256 %s in its latest load line in %s", old_hash, log_path);
  expect(&rl, false, want);

  /* A line without its newline is not there yet. */
  put(log_path, "a", "1.0 reload ");
  put(log_path, "a", new_hash);
  put(log_path, "a", " ok");
  expect(&rl, false, want);
  put(log_path, "a", "\n");
  expect(&rl, true, "sent SIGHUP to pid 1234; egress confirmed sha256 ");

  /* The latest load counts: an older load of the new bytes does not. */
  log_line("a", old_hash, "ok");
  expect(&rl, false, want);

  /* A line appended while it waits. */
  rl.confirm_timeout_ms = 5000;
  pthread_t writer;
  CHECK(pthread_create(&writer, NULL, append_later, NULL) == 0);
  expect(&rl, true, "egress confirmed sha256 ");
  pthread_join(writer, NULL);

  /* Rotated: the new file is read from its start. */
  rl.confirm_timeout_ms = 60;
  char rotated[160];
  snprintf(rotated, sizeof rotated, "%s.new", log_path);
  put(rotated, "w", "");
  CHECK(rename(rotated, log_path) == 0);
  snprintf(want, sizeof want, "it reports no line of %s (of its last 1048576 bytes) matches \" {sha256} ok\"",
           log_path);
  expect(&rl, false, want);

  /* Only the log's last 1 MiB is read at first: a load line before it is
   * not seen, a partial first line is dropped. */
  log_line("w", new_hash, "ok");
  FILE *f = fopen(log_path, "a");
  CHECK(f != NULL);
  for (int i = 0; f && i < 20000; i++)
    fprintf(f, "%063d request line of no interest\n", i);
  if (f)
    fclose(f);
  expect(&rl, false, "it reports no line of");
  log_line("a", new_hash, "ok");
  expect(&rl, true, "egress confirmed");

  /* Upper-case hex counts, and the text around {sha256} must be there. */
  struct br_reload_config json = {
      .confirm_log_file = log_path, .confirm_match = "\"config_hash\":\"{sha256}\"", .confirm_timeout_ms = 60};
  char upper[BR_SHA256_HEX_LEN + 1], line[256];
  for (size_t i = 0; i <= BR_SHA256_HEX_LEN; i++)
    upper[i] = (char)(new_hash[i] >= 'a' && new_hash[i] <= 'f' ? new_hash[i] - 'a' + 'A' : new_hash[i]);
  snprintf(line, sizeof line, "{\"event\":\"config_reload\",\"config_hash\":\"%s\"}\n", upper);
  put(log_path, "w", line);
  expect(&json, true, "egress confirmed");
  snprintf(line, sizeof line, "{\"event\":\"config_reload\",\"config_hash\":\"%s \"}\n", new_hash);
  put(log_path, "w", line);
  expect(&json, false, "it reports no line of");
}

static void test_status(void) {
  struct br_reload_config rl = {.confirm_status_file = status_path, .confirm_timeout_ms = 60};
  char text[512], want[512];

  snprintf(want, sizeof want, "it reports nothing: there is no status file %s", status_path);
  expect(&rl, false, want);

  snprintf(text, sizeof text, "{\"loads\": 1, \"sha256\": \"%s\", \"error\": \"routes[0]: unknown key 'x'\"}\n",
           old_hash);
  put(status_path, "w", text);
  snprintf(want, sizeof want,
           "did not confirm sha256 %s within 60 ms; it reports sha256 %s in %s; its last load failed: routes[0]: "
           "unknown key 'x'",
           new_hash, old_hash, status_path);
  expect(&rl, false, want);

  put(status_path, "w", "{\"loads\": 0, \"sha256\": null, \"error\": \"missing\"}\n");
  snprintf(want, sizeof want, "it reports no sha256 in %s (nothing loaded); its last load failed: missing",
           status_path);
  expect(&rl, false, want);

  put(status_path, "w", "[1, 2]\n");
  expect(&rl, false, "is not a JSON object");

  snprintf(text, sizeof text, "{\"loads\": 2, \"sha256\": \"%s\", \"error\": null}\n", new_hash);
  put(status_path, "w", text);
  expect(&rl, true, "egress confirmed sha256 ");
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/br-confirm.XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  snprintf(live, sizeof live, "%s/egress_routes.yaml", dir);
  snprintf(log_path, sizeof log_path, "%s/egress.log", dir);
  snprintf(status_path, sizeof status_path, "%s/egress.status.json", dir);
  const char *new_bytes = "{\"routes\": []}\n", *old_bytes = "{\"routes\": [{}]}\n";
  put(live, "w", new_bytes);
  br_sha256_hex(new_bytes, strlen(new_bytes), new_hash);
  br_sha256_hex(old_bytes, strlen(old_bytes), old_hash);

  test_log();
  test_status();

  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  CHECK_DONE();
}
