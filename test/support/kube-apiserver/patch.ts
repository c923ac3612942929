import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { parse as parseYaml } from 'yaml';
import { KubeError, badRequest } from './status.ts';

export const PATCH_TYPES = [
  'application/json-patch+json',
  'application/merge-patch+json',
  'application/strategic-merge-patch+json',
  'application/apply-patch+yaml',
];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown, dropDirectives = false): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    // Strategic merge patch directives ($patch, $retainKeys, $setElementOrder/...) carry ordering hints only.
    if (dropDirectives && k.startsWith('$')) continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v, dropDirectives);
  }
  return out;
}

/**
 * Applies a PATCH body by its content type. Strategic merge patch is treated as a merge patch (exact for
 * Secrets and ConfigMaps, which have no merge-keyed lists); server-side apply as a merge of the applied
 * configuration (no field ownership, so fields dropped from the configuration are not pruned).
 */
export function applyPatch(contentType: string, current: unknown, body: string): unknown {
  const type = contentType.split(';')[0]?.trim() ?? '';
  let patch: unknown;
  try {
    patch = type === 'application/apply-patch+yaml' ? parseYaml(body) : JSON.parse(body);
  } catch {
    // The parser's message quotes the input, which may be Secret data: say only what failed.
    throw badRequest(`error decoding patch as ${type}`);
  }
  switch (type) {
    case 'application/json-patch+json': {
      if (!Array.isArray(patch))
        throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
      try {
        return jsonpatch.applyPatch(structuredClone(current), patch as Operation[], true, true, true)
          .newDocument;
      } catch {
        // What the real server answers for any operation that does not apply (a failed `test`, a missing
        // parent): its generic 422, with empty details and without the patch library's reason.
        throw new KubeError(
          422,
          'Invalid',
          'the server rejected our request due to an error in our request',
          {},
        );
      }
    }
    case 'application/merge-patch+json':
      return mergePatch(current, patch);
    case 'application/strategic-merge-patch+json':
    case 'application/apply-patch+yaml':
      return mergePatch(current, patch, true);
    default:
      throw new KubeError(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.join(', ')}`,
      );
  }
}
