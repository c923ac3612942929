/** The pod annotations this project reads and writes; docs/annotations.md describes each one. */

import { KNOB_LIST, type KNOBS } from './knob-table.ts';

export const ANNOTATION_PREFIX = 'config-reloader.io/';

type AnnotatedKnob = {
  [K in keyof typeof KNOBS]: (typeof KNOBS)[K] extends { annotation: string } ? K : never;
}[keyof typeof KNOBS];

/** Each knob's annotation key, from the knob table (src/injection/knob-table.ts). */
export const ANNOTATIONS = Object.fromEntries(
  KNOB_LIST.flatMap((knob) =>
    knob.annotation !== undefined ? [[knob.key, `${ANNOTATION_PREFIX}${knob.annotation}`]] : [],
  ),
) as { readonly [K in AnnotatedKnob]: `${typeof ANNOTATION_PREFIX}${(typeof KNOBS)[K]['annotation']}` };

export const STATUS_INJECTED = 'injected';

/** Names of everything injection adds to a pod; a pod that already has one of them but no status annotation is denied. */
export const SIDECAR_CONTAINER = 'config-reloader';
export const SIDECAR_INIT_CONTAINER = 'config-reloader-init';
export const SHARED_VOLUME = 'config-reloader';
export const TOKEN_VOLUME = 'config-reloader-api-access';
export { TARGET_MARKER_VOLUME } from '../shared/process-marker.ts';

export { DEFAULT_MOUNT_PATH } from './knob-table.ts';

/** The string-valued annotations of a raw pod's metadata (other values are ignored, as the API server would reject them). */
export function readAnnotations(metadata: unknown): Map<string, string> {
  const result = new Map<string, string>();
  if (typeof metadata !== 'object' || metadata === null) return result;
  const annotations = (metadata as Record<string, unknown>).annotations;
  if (typeof annotations !== 'object' || annotations === null || Array.isArray(annotations)) return result;
  for (const [key, value] of Object.entries(annotations)) {
    if (typeof value === 'string') result.set(key, value);
  }
  return result;
}

export { parseList } from './knobs.ts';
