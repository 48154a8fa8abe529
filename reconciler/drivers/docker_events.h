/* docker_events: follows the Docker Engine's event stream and tells the loop
 * which containers started. The stream is read on a thread of its own; the
 * loop only ever receives names through a uv_async_t and never waits on the
 * engine. It knows containers, not slugs (the daemon maps one to the other). */
#ifndef BR_RECONCILER_DOCKER_EVENTS_H
#define BR_RECONCILER_DOCKER_EVENTS_H

#include <uv.h>

/* Called on the loop thread with the name of a container that started or was
 * unpaused, or with NULL when events may have been lost (then any container
 * may have started). */
typedef void (*br_docker_started_fn)(void *ctx, const char *name);

struct br_docker_events;

/* Starts following the engine on DOCKER_HOST's unix socket (default
 * /var/run/docker.sock). An engine that is not there, or goes away, is
 * retried with backoff up to 30 s, resuming with since= so that starts in
 * between are still reported. Returns 0 or a negative errno (*out is then
 * NULL). */
int br_docker_events_start(struct br_docker_events **out, uv_loop_t *loop, br_docker_started_fn started,
                           void *ctx);
/* Stops the thread (at once: it is woken, not waited out) and closes the
 * async handle; the follower is freed in its close callback, so the loop
 * must run once more. Loop thread only. NULL is ignored. */
void br_docker_events_stop(struct br_docker_events *ev);

#endif
