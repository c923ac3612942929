/**
 * How the reloader tells a container's processes apart in a pod with `shareProcessNamespace: true`: the contract
 * between the webhook, which mounts the marker, and the reloader, which looks for it. Both sides use this one
 * module so they cannot drift apart.
 *
 * The webhook mounts a tiny read-only emptyDir volume, TARGET_MARKER_VOLUME, into each container the reloader
 * signals or restarts, at targetMarkerPath(container). The reloader then finds that container's processes by the
 * mount point in /proc/PID/mountinfo. A mount, unlike an environment variable, survives apps that rewrite their
 * process title (nginx NUL-fills the memory /proc/PID/environ reads), and mountinfo is readable whatever the
 * reader's uid and gid (no ptrace access check), where environ needs both to match.
 */

/** The directory under which each target container gets its own marker mount. */
export const TARGET_MARKER_DIR = '/run/config-reloader/containers';

/** The name of the pod volume mounted at each target's marker path. */
export const TARGET_MARKER_VOLUME = 'config-reloader-target';

/** Where `container`'s marker volume is mounted inside that container. */
export function targetMarkerPath(container: string): string {
  return `${TARGET_MARKER_DIR}/${container}`;
}
