/* driver_exec: tells a sidecar to reload by running an operator's command
 * (no shell) with a deadline. Exit 0 is success (with confirm: once the
 * sidecar reports the new file's hash); anything else is retried. */
#include <errno.h>
#include <string.h>

#include "common/proc.h"
#include "reconciler/drivers/confirm.h"
#include "reconciler/drivers/reload.h"

static int exec_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  const struct br_strv *tmpl = &req->reload->argv;
  struct br_strv argv;
  struct br_buf word;
  br_strv_init(&argv);
  br_buf_init(&word, 4096);
  int rc = 0;
  for (size_t i = 0; i < tmpl->n && !rc; i++)
    if (!(rc = br_reload_expand(req, tmpl->v[i], &word)))
      rc = br_strv_add(&argv, word.data);
  br_buf_free(&word);
  if (rc || argv.n == 0) {
    br_strv_free(&argv);
    res->status = BR_RELOAD_PERMANENT;
    br_buf_adds(&res->message, "exec driver: argv does not expand");
    return rc == -ENOMEM ? rc : 0;
  }
  struct br_proc_result proc;
  rc = br_proc_run(argv.v, req->reload->timeout_ms, &proc);
  if (rc) {
    res->status = BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message, "exec driver: cannot run %s: %s", argv.v[0], strerror(-rc));
  } else {
    res->status = proc.exited && proc.exit_status == 0 ? BR_RELOAD_OK : BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message, "ran %s: ", argv.v[0]);
    br_proc_describe(&proc, req->reload->timeout_ms, &res->message);
    br_buf_free(&proc.output);
  }
  br_strv_free(&argv);
  /* Exit 0 says the command ran, not that the sidecar loaded the file. */
  if (res->status == BR_RELOAD_OK && br_confirm_configured(req))
    return br_confirm_reload(req, res);
  return 0;
}

const struct br_driver_ops br_driver_exec = {.name = "exec", .reload = exec_reload};
