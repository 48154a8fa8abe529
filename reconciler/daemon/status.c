/* status: builds the status answer and prints it for people (see status.h). */
#include "reconciler/daemon/status.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "reconciler/bottle/records.h"
#include "reconciler/daemon/control.h"

static json_t *slot_json(const struct br_tracked *b) {
  const struct br_slot *s = b->slot;
  char last[BR_TIME_TEXT_MAX] = "", next[BR_TIME_TEXT_MAX] = "";
  if (s->last_converge_ms)
    br_time_text(s->last_converge_ms * 1000000, last, sizeof last);
  if (s->phase == BR_PHASE_RETRYING && s->next_try_ms)
    br_time_text(s->next_try_ms * 1000000, next, sizeof next);
  json_t *one = json_pack("{s:s, s:s, s:i, s:s?, s:s?, s:s?, s:s?}", "slug", s->slug, "phase",
                          br_phase_name(s->phase), "attempts", (json_int_t)s->attempts, "next_try",
                          next[0] ? next : NULL, "last_converge", last[0] ? last : NULL, "desired_hash",
                          s->desired_hash[0] ? s->desired_hash : NULL, "message", s->message);
  /* Which credential slot goes to which host: what the egress container's
   * token values must match. */
  if (one && b->credentials)
    json_object_set_new(one, "credentials", json_loads(b->credentials, 0, NULL));
  /* Changes to it are found by the 2 s poll, not by inotify (watch limit). */
  if (one && b->polled)
    json_object_set_new(one, "polled", json_true());
  /* What ends when, soonest first. */
  if (one && b->credentials) /* NULL: nothing expires (most bottles), kept as no text at all */
    json_object_set_new(one, "expiring", b->expiring ? json_loads(b->expiring, 0, NULL) : json_array());
  return one;
}

static int cmp_slug(const void *a, const void *b) {
  return strcmp((*(struct br_tracked *const *)a)->slot->slug, (*(struct br_tracked *const *)b)->slot->slug);
}

struct collect {
  struct br_tracked **all;
  size_t n;
};

static void collect(struct br_tracked *b, void *ctx) {
  struct collect *c = ctx;
  if (b->slot)
    c->all[c->n++] = b;
}

json_t *br_status_answer(const struct br_tracked_table *bottles, const struct br_queue *q, const char *slug,
                         bool ready) {
  json_t *answer = json_object(), *list = json_array();
  struct collect c = {.all = calloc(br_tracked_count(bottles) + 1, sizeof *c.all)};
  struct br_tracked *one = slug ? br_tracked_get(bottles, slug) : NULL;
  if (c.all && one && one->slot)
    c.all[c.n++] = one;
  else if (c.all && !slug)
    br_tracked_foreach(bottles, collect, &c);
  qsort(c.all, c.n, sizeof *c.all, cmp_slug);
  for (size_t i = 0; i < c.n; i++)
    json_array_append_new(list, slot_json(c.all[i]));
  free(c.all);
  json_t *counts = json_object();
  for (int i = 0; i < BR_PHASE_COUNT; i++)
    json_object_set_new(counts, br_phase_name((enum br_phase)i),
                        json_integer(br_queue_count(q, (enum br_phase)i)));
  json_object_set_new(answer, "ready", json_boolean(ready));
  json_object_set_new(answer, "counts", counts);
  json_object_set_new(answer, "slugs", list);
  return answer;
}

/* Under a slug's row: each route still to end, and when. */
static void print_expiring(const json_t *expiring) {
  size_t i;
  json_t *route;
  json_array_foreach((json_t *)expiring, i, route) {
    printf("  expires %s: %s", json_string_value(json_object_get(route, "expires")),
           json_string_value(json_object_get(route, "host")));
    size_t j;
    json_t *path;
    json_array_foreach(json_object_get(route, "path_allowlist"), j, path) printf(" %s", json_string_value(path));
    printf("%s (%s)\n", json_is_true(json_object_get(route, "every_path")) ? " (every path)" : "",
           json_string_value(json_object_get(route, "fragment")));
  }
}

/* Under a slug's row: each credential slot and the hosts it serves. */
static void print_credentials(const json_t *credentials) {
  const char *slot;
  json_t *hosts, *host;
  json_object_foreach((json_t *)credentials, slot, hosts) {
    printf("  credential %s:", slot);
    size_t i;
    json_array_foreach(hosts, i, host) printf("%s %s", i ? "," : "", json_string_value(host));
    printf("%s\n", json_array_size(hosts) > 1 ? " (shared)" : "");
  }
}

int br_daemon_client(const struct br_config *cfg, const char *command, const char *slug, bool json) {
  char sock[PATH_MAX], request[BR_SLUG_MAX + 32];
  snprintf(sock, sizeof sock, "%s/%s/control.sock", cfg->state_dir, BR_RECORDS_DIR);
  snprintf(request, sizeof request, "%s%s%s", command, slug ? " " : "", slug ? slug : "");
  struct br_buf response;
  br_buf_init(&response, 64 * 1024 * 1024);
  int rc = br_control_request(sock, request, 10000, &response);
  if (rc) {
    fprintf(stderr, "bottle-reconciler: %s: %s (is `bottle-reconciler run` running on %s?)\n", sock, strerror(-rc),
            cfg->state_dir);
    br_buf_free(&response);
    return 1;
  }
  json_error_t jerr;
  json_t *answer = json_loadb(response.data, response.len, 0, &jerr);
  int code = 0;
  if (!answer) {
    fprintf(stderr, "bottle-reconciler: unreadable answer from the daemon: %s\n", jerr.text);
    code = 1;
  } else if (json_object_get(answer, "error")) {
    fprintf(stderr, "bottle-reconciler: %s\n", json_string_value(json_object_get(answer, "error")));
    code = 1;
  } else if (json || strcmp(command, "status") != 0) {
    if (json)
      fputs(response.data, stdout);
    else
      printf("resync requested%s%s\n", slug ? " for " : "", slug ? slug : "");
  } else {
    json_t *slugs = json_object_get(answer, "slugs"), *s;
    size_t i;
    printf("%-24s %-11s %-8s %-24s %s\n", "SLUG", "PHASE", "ATTEMPTS", "LAST CONVERGE", "DETAIL");
    json_array_foreach(slugs, i, s) {
      const char *next = json_string_value(json_object_get(s, "next_try"));
      const char *msg = json_string_value(json_object_get(s, "message"));
      const char *last = json_string_value(json_object_get(s, "last_converge"));
      printf("%-24s %-11s %-8lld %-24s %s%s%s%s\n", json_string_value(json_object_get(s, "slug")),
             json_string_value(json_object_get(s, "phase")),
             (long long)json_integer_value(json_object_get(s, "attempts")), last ? last : "-",
             next ? "next try " : "", next ? next : "", next && msg ? ": " : "", msg ? msg : "");
      if (json_is_true(json_object_get(s, "polled")))
        printf("  polled every 2 s: inotify cannot watch it (see the log)\n");
      print_credentials(json_object_get(s, "credentials"));
      print_expiring(json_object_get(s, "expiring"));
    }
  }
  json_decref(answer);
  br_buf_free(&response);
  return code;
}
