/* metrics: Prometheus exposition format 0.0.4, names prefixed
 * bottle_reconciler_. Everything is a counter or a gauge of the moment. */
#include "reconciler/daemon/metrics.h"

#include <stdint.h>

static const double bucket_bounds[BR_METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                         0.1,   0.25,   0.5,   1,    2.5,   10};

void br_metrics_observe(struct br_metrics *m, const struct br_converge_report *rep, int rc, double seconds,
                        int64_t now_ms) {
  if (rc) {
    m->errors_internal++;
    return;
  }
  m->converges[rep->outcome]++;
  if (rep->outcome == BR_OUTCOME_CONVERGED || rep->outcome == BR_OUTCOME_CHANGES)
    m->last_converged_ms = now_ms;
  m->writes += rep->writes;
  m->reloads += rep->reloads;
  for (size_t i = 0; i < BR_METRICS_BUCKETS; i++)
    if (seconds <= bucket_bounds[i]) {
      m->latency_buckets[i]++;
      break;
    }
  m->latency_count++;
  m->latency_sum += seconds;
}

int br_metrics_render(const struct br_metrics *m, const struct br_queue *q, size_t watches, int64_t now_ms,
                      struct br_buf *out) {
  struct br_buf *o = out;
  /* What alerts are written on: a heartbeat that a stuck or dead daemon
   * stops renewing (a gauge "up" would stay 1 in a file nobody rewrites),
   * and the last success, which the periodic resync renews while nothing
   * changes, since every bottle converges then (to "no changes"). */
  br_buf_printf(o,
                "# HELP bottle_reconciler_last_loop_timestamp_seconds When the daemon last wrote this file "
                "(at most once a second while anything changes, and on every periodic resync).\n"
                "# TYPE bottle_reconciler_last_loop_timestamp_seconds gauge\n"
                "bottle_reconciler_last_loop_timestamp_seconds %.3f\n",
                (double)now_ms / 1000);
  br_buf_printf(o,
                "# HELP bottle_reconciler_last_converge_timestamp_seconds When a converge last left a bottle "
                "converged (0: none yet).\n"
                "# TYPE bottle_reconciler_last_converge_timestamp_seconds gauge\n"
                "bottle_reconciler_last_converge_timestamp_seconds %.3f\n",
                (double)m->last_converged_ms / 1000);
  br_buf_adds(o, "# HELP bottle_reconciler_converges_total Converges finished, by outcome.\n"
                 "# TYPE bottle_reconciler_converges_total counter\n");
  for (int i = 0; i < BR_OUTCOME_COUNT; i++)
    br_buf_printf(o, "bottle_reconciler_converges_total{outcome=\"%s\"} %lu\n",
                  br_outcome_name((enum br_outcome)i), (unsigned long)m->converges[i]);
  br_buf_printf(o,
                "# HELP bottle_reconciler_writes_total Live files written.\n"
                "# TYPE bottle_reconciler_writes_total counter\n"
                "bottle_reconciler_writes_total %lu\n",
                (unsigned long)m->writes);
  br_buf_printf(o,
                "# HELP bottle_reconciler_reloads_total Sidecars told to reload.\n"
                "# TYPE bottle_reconciler_reloads_total counter\n"
                "bottle_reconciler_reloads_total %lu\n",
                (unsigned long)m->reloads);
  br_buf_printf(o,
                "# HELP bottle_reconciler_errors_total Failures, by kind.\n"
                "# TYPE bottle_reconciler_errors_total counter\n"
                "bottle_reconciler_errors_total{kind=\"invalid\"} %lu\n"
                "bottle_reconciler_errors_total{kind=\"transient\"} %lu\n"
                "bottle_reconciler_errors_total{kind=\"waiting\"} %lu\n"
                "bottle_reconciler_errors_total{kind=\"internal\"} %lu\n"
                "bottle_reconciler_errors_total{kind=\"inotify_overflow\"} %lu\n"
                "bottle_reconciler_errors_total{kind=\"watch_failed\"} %lu\n",
                (unsigned long)m->converges[BR_OUTCOME_INVALID], (unsigned long)m->converges[BR_OUTCOME_RETRY],
                (unsigned long)m->converges[BR_OUTCOME_WAITING], (unsigned long)m->errors_internal,
                (unsigned long)m->overflows, (unsigned long)m->watch_failures);
  br_buf_printf(o,
                "# HELP bottle_reconciler_resyncs_total Full resyncs (periodic, overflow, SIGHUP, requested).\n"
                "# TYPE bottle_reconciler_resyncs_total counter\n"
                "bottle_reconciler_resyncs_total %lu\n",
                (unsigned long)m->resyncs);
  br_buf_printf(o,
                "# HELP bottle_reconciler_queue_depth Slugs waiting for their debounce or a worker.\n"
                "# TYPE bottle_reconciler_queue_depth gauge\n"
                "bottle_reconciler_queue_depth %zu\n",
                br_queue_depth(q));
  br_buf_adds(o, "# HELP bottle_reconciler_slugs Slugs by phase.\n"
                 "# TYPE bottle_reconciler_slugs gauge\n");
  for (int i = 0; i < BR_PHASE_COUNT; i++)
    br_buf_printf(o, "bottle_reconciler_slugs{phase=\"%s\"} %u\n", br_phase_name((enum br_phase)i),
                  br_queue_count(q, (enum br_phase)i));
  br_buf_printf(o,
                "# HELP bottle_reconciler_watches inotify watches in use.\n"
                "# TYPE bottle_reconciler_watches gauge\n"
                "bottle_reconciler_watches %zu\n",
                watches);
  br_buf_adds(o, "# HELP bottle_reconciler_converge_duration_seconds Time to converge one slug.\n"
                 "# TYPE bottle_reconciler_converge_duration_seconds histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < BR_METRICS_BUCKETS; i++) {
    cumulative += m->latency_buckets[i];
    br_buf_printf(o, "bottle_reconciler_converge_duration_seconds_bucket{le=\"%g\"} %lu\n", bucket_bounds[i],
                  (unsigned long)cumulative);
  }
  br_buf_printf(o,
                "bottle_reconciler_converge_duration_seconds_bucket{le=\"+Inf\"} %lu\n"
                "bottle_reconciler_converge_duration_seconds_sum %.6f\n"
                "bottle_reconciler_converge_duration_seconds_count %lu\n",
                (unsigned long)m->latency_count, m->latency_sum, (unsigned long)m->latency_count);
  return 0;
}
