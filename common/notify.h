/* notify: the service manager's notification protocol (sd_notify(3)): one
 * datagram of KEY=VALUE lines to $NOTIFY_SOCKET. It must not decide what to
 * say or when; the daemon does. */
#ifndef BR_COMMON_NOTIFY_H
#define BR_COMMON_NOTIFY_H

#include <stdint.h>

/* Sends the formatted state ("READY=1", "STATUS=...") when NOTIFY_SOCKET
 * names a unix socket (a path, or "@name" for the abstract namespace).
 * Returns 1 when sent, 0 when not under a service manager, or a negative
 * errno (-EAGAIN when the manager does not read: never blocks). Keeps the
 * socket open between calls: call it from one thread. */
int br_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The same for a state the manager must not miss (READY=1, STOPPING=1):
 * while the manager's queue is full it retries, for up to 2 s. */
int br_notify_state(const char *state);

/* The watchdog interval the service manager expects pings at, from
 * WATCHDOG_USEC (and WATCHDOG_PID, when set, must be this process): 1 with
 * *usec set, 0 when no watchdog is asked for. */
int br_notify_watchdog_usec(uint64_t *usec);

#endif
