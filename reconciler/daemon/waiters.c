/* waiters: clients waiting for a converge (see waiters.h). A list: waiters
 * are few and short-lived, so a scan per finished converge costs nothing. */
#include "reconciler/daemon/waiters.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/bottle/slug.h"

struct br_waiter {
  struct br_waiter *next;
  struct br_waiters *owner;
  struct br_control_conn *conn;
  uv_timer_t deadline;
  char slug[BR_SLUG_MAX + 1];
  char hash[65];
  uint64_t dispatched; /* converges handed out when it began to wait */
};

void br_waiters_init(struct br_waiters *w, uv_loop_t *loop,
                     const struct br_slot *(*slot_of)(void *ctx, const char *slug), void *ctx) {
  w->loop = loop;
  w->head = NULL;
  w->slot_of = slot_of;
  w->ctx = ctx;
}

static void waiter_closed(uv_handle_t *h) { free(h->data); }

/* Answers one waiter and forgets it. */
static void answer(struct br_waiter *x, const char *outcome, const struct br_slot *slot, const char *errors) {
  struct br_waiter **pp = &x->owner->head;
  while (*pp != x)
    pp = &(*pp)->next;
  *pp = x->next;
  json_t *doc = json_pack("{s:s, s:s}", "outcome", outcome, "slug", x->slug);
  if (slot) {
    json_object_set_new(doc, "phase", json_string(br_phase_name(slot->phase)));
    json_object_set_new(doc, "desired_hash", json_string(slot->desired_hash));
    json_object_set_new(doc, "message", slot->message ? json_string(slot->message) : json_null());
  }
  if (errors && *errors)
    json_object_set_new(doc, "errors", json_string(errors));
  char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
  br_control_answer(x->conn, text ? text : "{\"outcome\":\"not-live\"}");
  free(text);
  json_decref(doc);
  uv_close((uv_handle_t *)&x->deadline, waiter_closed);
}

static void on_deadline(uv_timer_t *t) {
  struct br_waiter *x = t->data;
  answer(x, "not-live", x->owner->slot_of(x->owner->ctx, x->slug), NULL);
}

int br_waiters_add(struct br_waiters *w, struct br_control_conn *conn, const char *slug, const char *desired_hash,
                   unsigned timeout_ms, uint64_t dispatched) {
  struct br_waiter *x = calloc(1, sizeof *x);
  if (!x)
    return -ENOMEM;
  x->owner = w;
  x->conn = conn;
  x->dispatched = dispatched;
  snprintf(x->slug, sizeof x->slug, "%s", slug);
  snprintf(x->hash, sizeof x->hash, "%s", desired_hash);
  uv_timer_init(w->loop, &x->deadline);
  x->deadline.data = x;
  uv_timer_start(&x->deadline, on_deadline, timeout_ms, 0);
  x->next = w->head;
  w->head = x;
  br_control_defer(conn);
  return 0;
}

void br_waiters_converged(struct br_waiters *w, const struct br_slot *slot, enum br_phase phase,
                          const char *errors, uint64_t dispatch_no) {
  for (struct br_waiter *x = w->head, *next; x; x = next) {
    next = x->next;
    if (strcmp(x->slug, slot->slug) != 0)
      continue;
    bool read_after = dispatch_no > x->dispatched;
    if (phase == BR_PHASE_CONVERGED && (read_after || strcmp(slot->desired_hash, x->hash) == 0))
      answer(x, "live", slot, NULL);
    else if (phase == BR_PHASE_INVALID && read_after)
      answer(x, "refused", slot, errors);
    /* Retrying, waiting, settling, or an older state: the daemon goes on,
     * and so does the wait, until its deadline. */
  }
}

void br_waiters_drop(struct br_waiters *w, const char *slug, const char *why) {
  for (struct br_waiter *x = w->head, *next; x; x = next) {
    next = x->next;
    if (!slug || strcmp(x->slug, slug) == 0)
      answer(x, "not-live", NULL, why);
  }
}
