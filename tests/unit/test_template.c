/* Unit tests for common/template: the "{name}" grammar, expansion and the
 * messages for unknown or unclosed placeholders. */
#include "common/template.h"

#include <errno.h>

#include "check.h"

static const char *const names[] = {"state_dir", "slug", "project"};
static const char *const values[] = {"/srv/state", "alpha", "compose-7"};

static void expect(const char *tmpl, int want_rc, const char *want) {
  struct br_buf out;
  br_buf_init(&out, 64);
  const char *bad = tmpl; /* must be reset on success */
  int rc = br_template_expand(tmpl, names, values, 3, &out, &bad);
  CHECK(rc == want_rc);
  if (!rc) {
    CHECK(bad == NULL);
    CHECK_STR(br_buf_str(&out), want);
  } else if (rc == -EINVAL) {
    /* want names the text the bad "{" starts */
    CHECK(bad != NULL && strncmp(bad, want, strlen(want)) == 0);
  }
  br_buf_free(&out);
}

static void expect_check(const char *tmpl, size_t n, const char *want) {
  struct br_buf why;
  br_buf_init(&why, 512);
  int rc = br_template_check(tmpl, names, n, &why);
  CHECK(rc == (want ? -EINVAL : 0));
  if (want)
    CHECK_STR(why.data, want);
  else
    CHECK(why.len == 0);
  br_buf_free(&why);
}

int main(void) {
  expect("", 0, "");
  expect("plain/path", 0, "plain/path");
  expect("{state_dir}/{slug}/routes.d", 0, "/srv/state/alpha/routes.d");
  expect("{project}-egress-1", 0, "compose-7-egress-1");
  expect("{slug}{slug}", 0, "alphaalpha");
  expect("a}b", 0, "a}b"); /* a lone "}" is text */
  expect("{bottle}/x", -EINVAL, "{bottle}");
  expect("/x/{slug", -EINVAL, "{slug");
  expect("/x/{}", -EINVAL, "{}");
  expect("{{slug}}", -EINVAL, "{{slug}}"); /* no escape: "{{" is an error */
  expect("{SLUG}", -EINVAL, "{SLUG}");     /* names are case-sensitive */
  expect("{ slug }", -EINVAL, "{ slug }");
  /* The buffer's bound is honoured. */
  expect("{state_dir}{state_dir}{state_dir}{state_dir}{state_dir}{state_dir}{state_dir}", -EFBIG, NULL);

  /* A NULL value makes its name unavailable. */
  {
    const char *partial[] = {"/srv/state", NULL, "p"};
    struct br_buf out;
    br_buf_init(&out, 64);
    const char *bad = NULL;
    CHECK(br_template_expand("{state_dir}/{slug}", names, partial, 3, &out, &bad) == -EINVAL);
    CHECK(bad && strcmp(bad, "{slug}") == 0);
    br_buf_reset(&out);
    CHECK(br_template_expand("{project}", names, partial, 3, &out, NULL) == 0);
    CHECK_STR(out.data, "p");
    br_buf_free(&out);
  }

  expect_check("{state_dir}/{slug}", 2, NULL);
  expect_check("{state_dir}/{project}", 2, "unknown placeholder \"{project}\", expected {state_dir} or {slug}");
  expect_check("{state_dir}/{bottle}/x", 3,
               "unknown placeholder \"{bottle}\", expected {state_dir}, {slug} or {project}");
  expect_check("/x/{state_dir", 1, "unclosed placeholder \"{state_dir\", expected {state_dir}");
  expect_check("/srv/{slug}", 0, "unknown placeholder \"{slug}\", expected no placeholders here");
  expect_check("/srv/plain", 0, NULL);
  /* Only the placeholder is quoted, cut at 40 characters. */
  expect_check("{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}/rest", 1,
               "unknown placeholder \"{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\", expected "
               "{state_dir}");
  CHECK_DONE();
}
