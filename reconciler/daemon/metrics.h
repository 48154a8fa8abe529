/* metrics: the daemon's counters and the Prometheus text rendering, for the
 * node_exporter textfile collector. Counting and formatting only; the daemon
 * decides when the file is written. */
#ifndef BR_RECONCILER_METRICS_H
#define BR_RECONCILER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "reconciler/bottle/converge.h"
#include "reconciler/daemon/queue.h"

#define BR_METRICS_BUCKETS 12

struct br_metrics {
  uint64_t converges[BR_OUTCOME_COUNT];         /* by outcome */
  uint64_t writes;                              /* live files written */
  uint64_t reloads;                             /* sidecars told */
  uint64_t errors_internal;                     /* converges that failed outright (memory) */
  uint64_t overflows;                           /* inotify queue overflows */
  uint64_t resyncs;                             /* full resyncs, for any reason */
  uint64_t watch_failures;                      /* inotify_add_watch refused */
  uint64_t latency_buckets[BR_METRICS_BUCKETS]; /* cumulative at render time */
  uint64_t latency_count;
  double latency_sum;        /* seconds */
  int64_t last_converged_ms; /* wall clock of the last converge that left its bottle
                                converged, 0 = none yet */
};

/* Counts a finished converge; now_ms is the wall clock it finished at. */
void br_metrics_observe(struct br_metrics *m, const struct br_converge_report *rep, int rc, double seconds,
                        int64_t now_ms);
/* Renders every metric; now_ms (wall clock) is the heartbeat written with them. */
int br_metrics_render(const struct br_metrics *m, const struct br_queue *q, size_t watches, int64_t now_ms,
                      struct br_buf *out);

#endif
