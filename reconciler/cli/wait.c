/* wait: waits for a change to be live, through the daemon or here (see
 * wait.h). */
#include "reconciler/cli/wait.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "reconciler/bottle/converge.h"
#include "reconciler/bottle/records.h"
#include "reconciler/daemon/control.h"

const char *br_live_name(enum br_live live) {
  return live == BR_LIVE ? "live" : live == BR_REFUSED ? "refused" : "not-live";
}

int br_converge_here(struct cli *cli, struct br_bottle *b, int64_t deadline_ns, struct br_converge_report *rep) {
  int rc = br_converge_bottle(b, BR_CONVERGE_WAIT, NULL, rep);
  /* A sidecar too young to be signalled asks for a short wait; a one-shot
   * command can afford it instead of failing, within its deadline. */
  for (int tries = 0;
       !rc && rep->outcome == BR_OUTCOME_RETRY && rep->retry_after_ms && rep->retry_after_ms <= 10000 &&
       tries < 5 && br_monotonic_ns() + (int64_t)rep->retry_after_ms * 1000000 <= deadline_ns;
       tries++) {
    write_audit(cli, rep->audit);
    struct timespec ts = {.tv_sec = rep->retry_after_ms / 1000,
                          .tv_nsec = (long)(rep->retry_after_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    br_converge_report_free(rep);
    br_converge_report_init(rep);
    rc = br_converge_bottle(b, BR_CONVERGE_WAIT, NULL, rep);
  }
  write_audit(cli, rep->audit);
  return rc;
}

static enum br_live wait_here(struct cli *cli, struct br_bottle *b, struct br_buf *why) {
  struct br_converge_report rep;
  br_converge_report_init(&rep);
  int64_t deadline = br_monotonic_ns() + (int64_t)cli->wait_s * 1000000000;
  int rc = br_converge_here(cli, b, deadline, &rep);
  enum br_live live = BR_NOT_LIVE;
  if (rc)
    br_buf_printf(why, "cannot converge: %s", strerror(-rc));
  else if (rep.outcome == BR_OUTCOME_CONVERGED)
    live = BR_LIVE; /* read after the change was installed: it includes it, whatever came with it */
  else if (rep.outcome == BR_OUTCOME_INVALID)
    live = BR_REFUSED,
    br_buf_printf(why, "%s", rep.errors.len ? br_buf_str(&rep.errors) : br_buf_str(&rep.message));
  else
    br_buf_printf(why, "%s: %s (no daemon runs to retry it: start `bottle-reconciler run`, or run `once`)",
                  br_outcome_name(rep.outcome), br_buf_str(&rep.message));
  br_converge_report_free(&rep);
  return live;
}

enum br_live br_wait_live(struct cli *cli, struct br_bottle *b, const char *desired_hash, struct br_buf *why,
                          bool *by_daemon) {
  char sock[PATH_MAX], request[256];
  snprintf(sock, sizeof sock, "%s/%s/control.sock", cli->cfg.state_dir, BR_RECORDS_DIR);
  unsigned ms = cli->wait_s * 1000;
  snprintf(request, sizeof request, "wait %s %s %u", b->slug, desired_hash, ms);
  struct br_buf response;
  br_buf_init(&response, 1024 * 1024);
  int rc = br_control_request(sock, request, ms + 5000, &response);
  *by_daemon = rc != -ENOENT && rc != -ECONNREFUSED;
  if (!*by_daemon) {
    br_buf_free(&response);
    return wait_here(cli, b, why);
  }
  enum br_live live = BR_NOT_LIVE;
  json_t *doc = rc ? NULL : json_loadb(response.data, response.len, 0, NULL);
  const char *outcome = json_string_value(json_object_get(doc, "outcome"));
  const char *errors = json_string_value(json_object_get(doc, "errors"));
  const char *message = json_string_value(json_object_get(doc, "message"));
  const char *error = json_string_value(json_object_get(doc, "error"));
  if (rc)
    br_buf_printf(why, "the daemon did not answer: %s", strerror(-rc));
  else if (error)
    br_buf_printf(why, "the daemon: %s", error);
  else if (outcome && strcmp(outcome, "live") == 0)
    live = BR_LIVE;
  else if (outcome && strcmp(outcome, "refused") == 0)
    live = BR_REFUSED, br_buf_printf(why, "%s", errors ? errors : message ? message : "refused");
  else
    br_buf_printf(why, "not live after %u s: %s%s%s (the daemon keeps retrying)", cli->wait_s,
                  json_string_value(json_object_get(doc, "phase"))
                      ? json_string_value(json_object_get(doc, "phase"))
                      : "pending",
                  message || errors ? ": " : "",
                  message  ? message
                  : errors ? errors
                           : "");
  json_decref(doc);
  br_buf_free(&response);
  return live;
}
