/**
 * Preloaded (NODE_OPTIONS=--import) into a reloader the harness runs as another user: when the test runs as root,
 * the process drops to uid and gid TEST_RUN_AS_UID before the reloader starts, so that file permissions apply to
 * it (root ignores them). Not a test file.
 */
const uid = Number(process.env.TEST_RUN_AS_UID);
if (Number.isInteger(uid) && uid > 0 && process.getuid?.() === 0) {
  process.setgroups?.([uid]);
  process.setgid?.(uid);
  process.setuid?.(uid);
}
