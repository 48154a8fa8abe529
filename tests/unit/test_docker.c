/* test_docker: the pure parts of the docker driver, rule by rule: RFC 3339
 * times, inspect answers, which mount holds a live file, mountinfo roots,
 * container names and their templates, DOCKER_HOST. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/fileio.h"
#include "config/config.h"
#include "reconciler/drivers/docker_container.h"
#include "reconciler/drivers/docker_engine.h"

static void expect_time(const char *text, int want_rc, int64_t want_ns) {
  int64_t ns = -1;
  int rc = br_rfc3339_parse(text, &ns);
  if (rc != want_rc || (!rc && ns != want_ns)) {
    fprintf(stderr, "br_rfc3339_parse(\"%s\"): rc %d ns %lld, want rc %d ns %lld\n", text, rc, (long long)ns,
            want_rc, (long long)want_ns);
    check_failures++;
  }
}

static void test_rfc3339(void) {
  expect_time("1970-01-01T00:00:00Z", 0, 0);
  expect_time("2024-05-01T12:34:56Z", 0, 1714566896LL * 1000000000);
  /* Docker's StartedAt: nanoseconds, and fewer digits scaled up. */
  expect_time("2024-05-01T12:34:56.123456789Z", 0, 1714566896123456789LL);
  expect_time("2024-05-01T12:34:56.5Z", 0, 1714566896500000000LL);
  expect_time("2024-05-01t12:34:56.000000001z", 0, 1714566896000000001LL);
  /* Offsets move the instant the other way. */
  expect_time("2024-05-01T14:34:56.25+02:00", 0, 1714566896250000000LL);
  expect_time("2024-05-01T07:04:56-05:30", 0, 1714566896LL * 1000000000);
  /* Leap years and the end of February. */
  expect_time("2024-02-29T00:00:00Z", 0, 1709164800LL * 1000000000);
  expect_time("2000-02-29T00:00:00Z", 0, 951782400LL * 1000000000);
  expect_time("2023-02-29T00:00:00Z", -EINVAL, 0);
  expect_time("1900-02-29T00:00:00Z", -EINVAL, 0);
  /* Docker's "never started", and anything before the epoch, is 0. */
  expect_time("0001-01-01T00:00:00Z", 0, 0);
  expect_time("1969-12-31T23:59:59Z", 0, 0);
  /* Malformed. */
  expect_time("", -EINVAL, 0);
  expect_time("2024-05-01", -EINVAL, 0);
  expect_time("2024-05-01T12:34:56", -EINVAL, 0);             /* no zone */
  expect_time("2024-05-01 12:34:56Z", -EINVAL, 0);            /* RFC 3339 allows it; Docker never writes it */
  expect_time("2024-05-01T12:34:56.Z", -EINVAL, 0);           /* a dot without digits */
  expect_time("2024-05-01T12:34:56.1234567890Z", -EINVAL, 0); /* beyond nanoseconds */
  expect_time("2024-13-01T12:34:56Z", -EINVAL, 0);
  expect_time("2024-04-31T12:34:56Z", -EINVAL, 0);
  expect_time("2024-05-01T24:00:00Z", -EINVAL, 0);
  expect_time("2024-05-01T12:34:56+2:00", -EINVAL, 0);
  expect_time("2024-05-01T12:34:56Zjunk", -EINVAL, 0);
  expect_time("2300-01-01T00:00:00Z", -EINVAL, 0); /* past int64 nanoseconds */
  expect_time(NULL, -EINVAL, 0);
}

static const char *inspect_json =
    "{\"Id\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
    " \"Name\":\"/demo-egress-1\","
    " \"State\":{\"Status\":\"running\",\"Running\":true,\"Paused\":false,\"Restarting\":false,"
    "  \"Pid\":4242,\"StartedAt\":\"2024-05-01T12:34:56.123456789Z\"},"
    " \"HostConfig\":{\"RestartPolicy\":{\"Name\":\"unless-stopped\",\"MaximumRetryCount\":0}},"
    " \"Config\":{\"Tty\":false,\"StopSignal\":\"SIGTERM\"},"
    " \"Mounts\":[{\"Type\":\"bind\",\"Source\":\"/srv/state/demo/egress\",\"Destination\":\"/etc/egress\"},"
    "  {\"Type\":\"tmpfs\",\"Destination\":\"/tmp\"},"
    "  {\"Type\":\"bind\",\"Source\":\"/srv/state/demo/egress/certs/\",\"Destination\":\"/certs\"},"
    "  {\"Type\":\"bind\",\"Source\":\"/srv/state/demo/pipelock/pipelock.yaml\","
    "   \"Destination\":\"/etc/pipelock/pipelock.yaml\"},"
    "  {\"Type\":\"volume\",\"Source\":\"/var/lib/docker/volumes/x/_data\",\"Destination\":\"/data\"}]}";

static void test_inspect(void) {
  struct br_docker_container c;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(br_docker_container_parse(inspect_json, strlen(inspect_json), &c, &err) == 0);
  CHECK_STR(c.id, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  CHECK_STR(c.name, "demo-egress-1");
  CHECK(c.running && !c.paused && !c.restarting);
  CHECK(c.pid == 4242);
  CHECK(c.started_at_ns == 1714566896123456789LL);
  CHECK_STR(c.stop_signal, "SIGTERM");
  CHECK(!c.tty);
  CHECK_STR(c.restart_policy, "unless-stopped");
  CHECK(c.n_mounts == 4); /* tmpfs has no Source */

  bool exact = true;
  struct br_buf inside;
  br_buf_init(&inside, 4096);
  /* The directory mount holds the live file. */
  const struct br_docker_mount *m =
      br_docker_mount_for(&c, "/srv/state/demo/egress/egress_routes.yaml", &exact, &inside);
  CHECK(m && strcmp(m->destination, "/etc/egress") == 0 && !exact);
  CHECK_STR(inside.data, "/etc/egress/egress_routes.yaml");
  /* The longest source wins, a trailing "/" notwithstanding. */
  m = br_docker_mount_for(&c, "/srv/state/demo/egress/certs/ca.pem", &exact, &inside);
  CHECK(m && strcmp(m->destination, "/certs") == 0 && !exact);
  CHECK_STR(inside.data, "/certs/ca.pem");
  /* A prefix that is not a path component is no mount of it. */
  CHECK(br_docker_mount_for(&c, "/srv/state/demo/egress2/egress_routes.yaml", &exact, &inside) == NULL);
  CHECK(br_docker_mount_for(&c, "/srv/state/other/egress/egress_routes.yaml", &exact, &inside) == NULL);
  /* A single-file bind mount is exact. */
  m = br_docker_mount_for(&c, "/srv/state/demo/pipelock/pipelock.yaml", &exact, &inside);
  CHECK(m && exact);
  CHECK_STR(inside.data, "/etc/pipelock/pipelock.yaml");
  /* Volumes count too. */
  m = br_docker_mount_for(&c, "/var/lib/docker/volumes/x/_data/f", &exact, NULL);
  CHECK(m && strcmp(m->destination, "/data") == 0);
  br_docker_container_free(&c);
  br_docker_container_free(&c); /* twice is harmless */

  /* What a stopped container and a root mount look like. */
  const char *stopped =
      "{\"Id\":\"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\",\"Name\":\"/x\","
      " \"State\":{\"Running\":false,\"Pid\":0,\"StartedAt\":\"0001-01-01T00:00:00Z\"},"
      " \"Config\":{\"StopSignal\":\"\"},\"HostConfig\":{\"RestartPolicy\":{\"Name\":\"no\"}},"
      " \"Mounts\":[{\"Type\":\"bind\",\"Source\":\"/\",\"Destination\":\"/host\"}]}";
  CHECK(br_docker_container_parse(stopped, strlen(stopped), &c, &err) == 0);
  CHECK(!c.running && c.pid == 0 && c.started_at_ns == 0 && !c.stop_signal[0] && !c.restart_policy[0]);
  m = br_docker_mount_for(&c, "/srv/a/b.yaml", &exact, &inside);
  CHECK(m && !exact);
  CHECK_STR(inside.data, "/host/srv/a/b.yaml");
  br_docker_container_free(&c);

  /* Malformed answers say what is missing. */
  const char *bad[] = {"", "[]", "{\"Id\":\"abc\"}",
                       "{\"Id\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}",
                       "{\"Id\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
                       "\"State\":{\"Pid\":1,\"StartedAt\":\"yesterday\"}}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    br_buf_reset(&err);
    CHECK(br_docker_container_parse(bad[i], strlen(bad[i]), &c, &err) == -EINVAL);
    CHECK(err.len > 0);
    br_docker_container_free(&c);
  }
  br_buf_free(&inside);
  br_buf_free(&err);
}

static void test_mountinfo(void) {
  /* From a container with a directory mount, a single-file mount whose host
   * file was replaced by rename, and a mount point with a space. */
  const char *text =
      "812 700 0:52 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/x\n"
      "813 812 0:54 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
      "830 812 8:1 /srv/state/demo/egress /etc/egress rw,relatime - ext4 /dev/sda1 rw\n"
      "831 812 8:1 /srv/state/demo/pipelock/pipelock.yaml//deleted /etc/pipelock/pipelock.yaml rw - ext4 "
      "/dev/sda1 rw\n"
      "832 812 8:1 /srv/with\\040space /etc/with\\040space rw - ext4 /dev/sda1 rw\n"
      "833 830 8:1 /srv/other /etc/egress rw - ext4 /dev/sda1 rw\n";
  struct br_buf root;
  br_buf_init(&root, 4096);
  /* The last mount on a point is the one on top. */
  CHECK(br_mountinfo_root(text, strlen(text), "/etc/egress", &root) == 0);
  CHECK_STR(root.data, "/srv/other");
  CHECK(!br_mount_root_deleted(root.data));
  CHECK(br_mountinfo_root(text, strlen(text), "/etc/pipelock/pipelock.yaml", &root) == 0);
  CHECK(br_mount_root_deleted(root.data));
  CHECK(br_mountinfo_root(text, strlen(text), "/etc/with space", &root) == 0);
  CHECK_STR(root.data, "/srv/with space");
  CHECK(br_mountinfo_root(text, strlen(text), "/etc", &root) == -ENOENT);
  CHECK(br_mountinfo_root(text, strlen(text), "/", &root) == 0);
  CHECK_STR(root.data, "/");
  /* Without a trailing newline, and a truncated line. */
  CHECK(br_mountinfo_root("1 0 8:1 /a /b rw", 16, "/b", &root) == 0);
  CHECK_STR(root.data, "/a");
  CHECK(br_mountinfo_root("1 0 8:1 /a\n", 11, "/b", &root) == -EINVAL);
  CHECK(br_mountinfo_root("", 0, "/b", &root) == -ENOENT);
  CHECK(!br_mount_root_deleted("/deleted"));
  CHECK(br_mount_root_deleted("//deleted"));
  br_buf_free(&root);
}

static void test_names(void) {
  CHECK(br_docker_name_valid("demo-egress-1"));
  CHECK(br_docker_name_valid("a"));
  CHECK(br_docker_name_valid("A.b_c-9"));
  CHECK(!br_docker_name_valid(""));
  CHECK(!br_docker_name_valid("-x"));
  CHECK(!br_docker_name_valid(".x"));
  CHECK(!br_docker_name_valid("a/b"));
  CHECK(!br_docker_name_valid("a b"));
  CHECK(!br_docker_name_valid("a?signal=KILL"));
  char long_name[300];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  CHECK(!br_docker_name_valid(long_name));
  long_name[255] = '\0';
  CHECK(br_docker_name_valid(long_name));

  /* Container templates, and the way back from a name to a sidecar. */
  struct br_config cfg;
  CHECK(br_config_defaults(&cfg) == 0);
  CHECK(br_docker_in_use(&cfg));
  CHECK(br_docker_sidecar_named(&cfg, "alpha", NULL, "alpha-egress-1") == &cfg.egress);
  CHECK(br_docker_sidecar_named(&cfg, "alpha", NULL, "alpha-pipelock-1") == &cfg.pipelock);
  CHECK(br_docker_sidecar_named(&cfg, "alpha", "proj7", "proj7-egress-1") == &cfg.egress);
  CHECK(br_docker_sidecar_named(&cfg, "alpha", "proj7", "alpha-egress-1") == NULL);
  CHECK(br_docker_sidecar_named(&cfg, "alpha", NULL, "beta-egress-1") == NULL);
  CHECK(br_docker_sidecar_named(&cfg, "alpha", NULL, "alpha-egress-2") == NULL);
  /* A sidecar on another driver is nobody's container. */
  cfg.egress.reload.driver = BR_DRIVER_NONE;
  CHECK(br_docker_sidecar_named(&cfg, "alpha", NULL, "alpha-egress-1") == NULL);
  CHECK(br_docker_in_use(&cfg));
  cfg.pipelock.reload.driver = BR_DRIVER_EXEC;
  CHECK(!br_docker_in_use(&cfg));
  cfg.pipelock.reload.driver = BR_DRIVER_DOCKER;
  free(cfg.pipelock.reload.container);
  cfg.pipelock.reload.container = strdup("bottle_{slug}.{sidecar}");
  CHECK(br_docker_sidecar_named(&cfg, "a.b", NULL, "bottle_a.b.pipelock") == &cfg.pipelock);
  br_config_free(&cfg);
}

static void test_socket(void) {
  struct br_buf path, err;
  br_buf_init(&path, 4096);
  br_buf_init(&err, 4096);
  CHECK(br_docker_socket(NULL, &path, &err) == 0);
  CHECK_STR(path.data, "/var/run/docker.sock");
  CHECK(br_docker_socket("", &path, &err) == 0);
  CHECK_STR(path.data, "/var/run/docker.sock");
  CHECK(br_docker_socket("unix:///run/user/1000/docker.sock", &path, &err) == 0);
  CHECK_STR(path.data, "/run/user/1000/docker.sock");
  CHECK(err.len == 0);
  CHECK(br_docker_socket("tcp://127.0.0.1:2375", &path, &err) == -EINVAL);
  CHECK(err.data && strstr(err.data, "only unix:///PATH"));
  CHECK(br_docker_socket("unix://relative.sock", &path, &err) == -EINVAL);
  br_buf_free(&path);
  br_buf_free(&err);
}

/* Nothing listens on this socket: a request fails fast and says where. */
static void test_unreachable(void) {
  struct br_docker_answer ans;
  struct br_buf err;
  br_docker_answer_init(&ans);
  br_buf_init(&err, 4096);
  int rc = br_docker_request("/nonexistent/br-test-docker.sock", "GET", "/_ping", 1000, &ans, &err);
  CHECK(rc == -ECONNREFUSED);
  CHECK(err.data && strstr(err.data, "/nonexistent/br-test-docker.sock"));
  br_docker_answer_free(&ans);
  br_buf_free(&err);
}

int main(void) {
  test_rfc3339();
  test_inspect();
  test_mountinfo();
  test_names();
  test_socket();
  test_unreachable();
  CHECK_DONE();
}
