import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import type { AdmissionRequest } from './admission.ts';
import type { Authorizer, User } from './authz.ts';
import { VERSION_INFO, apiGroupDoc, apiGroupList, apiResourceList, apiVersions } from './discovery.ts';
import type { FieldManager } from './managed-fields.ts';
import { managerName } from './managed-fields.ts';
import { applyPatch } from './patch.ts';
import { PROTOBUF_TYPE, decodeProtobuf } from './protobuf.ts';
import type { ResourceRequest } from './request-info.ts';
import { parsePath } from './request-info.ts';
import type { ResourceDef } from './resources.ts';
import { findResource, groupVersion } from './resources.ts';
import type { FieldSelector, LabelSelector } from './selectors.ts';
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  selectedName,
} from './selectors.ts';
import type { StatusBody } from './status.ts';
import { KubeError, badRequest, invalidCauses, methodNotAllowed, notFound, pathNotFound } from './status.ts';
import type { Store } from './store.ts';
import type { IncludeObject } from './table.ts';
import { toTable } from './table.ts';
import type { KubeObject } from './types.ts';
import type { WatchHooks } from './watch.ts';
import { ActiveWatch } from './watch.ts';

/** The per-request context the server's bookkeeping needs: who asked, and a callback when the status is known. */
export interface RequestContext {
  user: string;
  respond: (status: number) => void;
}

export interface HandlerOptions {
  serverAddress: () => string;
  watchHooks: () => WatchHooks;
  onWatch: (w: ActiveWatch) => void;
  /** Optional OpenAPI documents; absent → 404, and kubectl falls back. */
  openapi?: (path: string) => unknown;
  /** The admission chain of a pod CREATE: the pod to store and warnings for the client, or a KubeError. */
  admitPod?: (pod: KubeObject, req: AdmissionRequest) => Promise<{ pod: KubeObject; warnings: string[] }>;
}

const MAX_BODY = 3 * 1024 * 1024;
const CONTINUE_TOO_OLD =
  'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.';

type Negotiated = {
  table?: { apiVersion: string; include: IncludeObject };
  /** Accept: application/json;as=PartialObjectMetadata(List);g=meta.k8s.io;v=V: metadata only, as the metadata client asks. */
  metadata?: { apiVersion: string; list: boolean };
};

export function sendJson(
  res: ServerResponse,
  ctx: RequestContext | undefined,
  status: number,
  body: unknown,
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-cache, private',
  });
  res.end(text);
  ctx?.respond(status);
}

export function sendStatus(res: ServerResponse, ctx: RequestContext | undefined, status: StatusBody): void {
  sendJson(res, ctx, status.code, status);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY)
      throw new KubeError(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_BODY}`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function decodeObject(req: IncomingMessage, body: Buffer): KubeObject {
  const type = (req.headers['content-type'] ?? 'application/json').split(';')[0]?.trim();
  let obj: unknown;
  try {
    if (type === 'application/json' || type === '') obj = JSON.parse(body.toString('utf8'));
    else if (type === 'application/yaml') obj = parseYaml(body.toString('utf8'));
    else if (type === PROTOBUF_TYPE) obj = decodeProtobuf(body);
    else
      throw new KubeError(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf`,
      );
  } catch (err) {
    if (err instanceof KubeError) throw err;
    // The parser's message quotes the input, which may be Secret data: say only what failed.
    throw badRequest(`error decoding request body as ${type}`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
    throw badRequest('Object in the request body is not a JSON object');
  const o = obj as KubeObject;
  o.metadata ??= { name: '' };
  return o;
}

/** Picks the response form from Accept: a Table when kubectl asks for one, metadata only (PartialObjectMetadata) when a metadata client does, else plain JSON; 406 when none fits. */
function negotiate(accept: string | undefined, query: URLSearchParams): Negotiated {
  if (!accept) return {};
  for (const clause of accept.split(',')) {
    const [type, ...params] = clause.split(';').map((p) => p.trim());
    const p = Object.fromEntries(params.map((kv) => kv.split('=').map((s) => s.trim()) as [string, string]));
    if (
      type === 'application/json' &&
      (p.as === 'PartialObjectMetadata' || p.as === 'PartialObjectMetadataList') &&
      p.g === 'meta.k8s.io' &&
      (p.v === 'v1' || p.v === 'v1beta1')
    )
      return { metadata: { apiVersion: `meta.k8s.io/${p.v}`, list: p.as === 'PartialObjectMetadataList' } };
    if (
      type === 'application/json' &&
      p.as === 'Table' &&
      p.g === 'meta.k8s.io' &&
      (p.v === 'v1' || p.v === 'v1beta1')
    ) {
      const include = (query.get('includeObject') ?? 'Metadata') as IncludeObject;
      return { table: { apiVersion: `meta.k8s.io/${p.v}`, include } };
    }
    if ((type === 'application/json' && p.as === undefined) || type === '*/*' || type === 'application/*')
      return {};
  }
  throw new KubeError(
    406,
    'NotAcceptable',
    `only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io`,
  );
}

/** The Go type the real server names in a 406 for the wrong metadata form: `*core.Pod`, `*coordination.LeaseList`. */
function goType(def: ResourceDef, list: boolean): string {
  return `*${def.group ? (def.group.split('.')[0] as string) : 'core'}.${def.kind}${list ? 'List' : ''}`;
}

/** 406 when the metadata form asked for does not fit the answer (a list for an object, or the other way round). */
function checkMetadataForm(neg: Negotiated, def: ResourceDef, list: boolean): void {
  if (!neg.metadata || neg.metadata.list === list) return;
  throw new KubeError(
    406,
    'NotAcceptable',
    list
      ? `you requested PartialObjectMetadata, but the requested object is a list (${goType(def, true)})`
      : `you requested PartialObjectMetadataList, but the requested object is not a list (${goType(def, false)})`,
  );
}

function partialMetadata(obj: KubeObject, apiVersion: string): Record<string, unknown> {
  return { kind: 'PartialObjectMetadata', apiVersion, metadata: obj.metadata };
}

function stripType(obj: KubeObject): Omit<KubeObject, 'kind' | 'apiVersion'> {
  const { kind: _k, apiVersion: _a, ...rest } = obj;
  return rest;
}

function dryRun(query: URLSearchParams): boolean {
  const values = query.getAll('dryRun');
  for (const v of values) if (v !== 'All') throw badRequest(`Invalid dry run value: ${v}`);
  return values.length > 0;
}

/**
 * Why a resourceVersion is not one, in the words of the real server (etcd3's versioner: Go's strconv.ParseUint),
 * or undefined when it is a valid uint64.
 */
function rvProblem(value: string): string | undefined {
  const syntax = /^\d+$/.test(value) ? undefined : 'invalid syntax';
  const why = syntax ?? (BigInt(value) > 0xffffffffffffffffn ? 'value out of range' : undefined);
  return (
    why &&
    `resourceVersion: Invalid value: ${JSON.stringify(value)}: strconv.ParseUint: parsing ${JSON.stringify(value)}: ${why}`
  );
}

/** A list's resourceVersion: an invalid one is 400 BadRequest. */
function parseRv(value: string): number {
  const problem = rvProblem(value);
  if (problem) throw badRequest(`invalid resource version: ${problem}`);
  return Number(value);
}

/**
 * A watch's resourceVersion: an invalid one reaches the watch cache as a plain error, which the real server
 * answers with 500 and a Status that has no reason.
 */
function checkWatchRv(value: string): void {
  const problem = rvProblem(value);
  if (problem) throw new KubeError(500, '', problem);
}

interface ContinueToken {
  rv: number;
  start: string;
}

function encodeContinue(t: ContinueToken): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: t.rv, start: t.start })).toString('base64url');
}

function decodeContinue(s: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as {
      v?: string;
      rv?: number;
      start?: string;
    };
    if (t.v === 'meta.k8s.io/v1' && typeof t.rv === 'number' && typeof t.start === 'string')
      return { rv: t.rv, start: t.start };
  } catch {
    // fall through to the real server's message
  }
  throw badRequest(
    'continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)',
  );
}

function keyOf(obj: KubeObject): string {
  return `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
}

/** Routes one authenticated request: discovery, then the resource verbs, all answering as kube-apiserver does. */
export class ApiHandler {
  readonly #store: Store;
  readonly #authz: Authorizer;
  readonly #opts: HandlerOptions;

  constructor(store: Store, authz: Authorizer, opts: HandlerOptions) {
    this.#store = store;
    this.#authz = authz;
    this.#opts = opts;
  }

  async handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, url: URL): Promise<void> {
    try {
      const user = this.#authz.authenticate(req.headers.authorization);
      ctx.user = user.name;
      await this.#route(req, res, ctx, url, user);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof KubeError) sendStatus(res, ctx, err.status);
      else
        sendStatus(
          res,
          ctx,
          new KubeError(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`).status,
        );
    }
  }

  async #route(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    url: URL,
    user: User,
  ): Promise<void> {
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (path === '/version') return sendJson(res, ctx, 200, VERSION_INFO);
    if (path === '/healthz' || path === '/livez' || path === '/readyz') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' }).end('ok');
      return ctx.respond(200);
    }
    if (path.startsWith('/openapi/')) {
      const doc = this.#opts.openapi?.(path);
      if (doc === undefined) throw pathNotFound();
      return sendJson(res, ctx, 200, doc);
    }
    if (path === '/api') return sendJson(res, ctx, 200, apiVersions(this.#opts.serverAddress()));
    if (path === '/apis') return sendJson(res, ctx, 200, apiGroupList());
    const parsed = parsePath(req.method ?? 'GET', path, url.searchParams);
    if (parsed.kind === 'other') throw pathNotFound();
    if (parsed.kind === 'discovery') {
      const doc =
        parsed.version === undefined
          ? apiGroupDoc(parsed.group)
          : apiResourceList(parsed.group, parsed.version);
      if (!doc) throw pathNotFound();
      return sendJson(res, ctx, 200, doc);
    }
    const r = parsed.req;
    const def = findResource(r.group, r.version, r.resource);
    if (!def || r.subresource !== undefined) throw pathNotFound();
    const q = url.searchParams;
    const labels = parseLabelSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector'), [
      'metadata.name',
      'metadata.namespace',
      ...(def.fieldLabels ?? []),
    ]);
    const namespace = def.namespaced ? r.namespace : undefined;
    // RBAC sees a list or watch pinned by fieldSelector=metadata.name as a request for that one name.
    const name = r.name ?? (r.verb === 'list' || r.verb === 'watch' ? selectedName(fields) : undefined);
    const attrs: Parameters<Authorizer['authorize']>[1] = {
      verb: r.verb,
      group: r.group,
      resource: r.resource,
    };
    if (r.namespace !== undefined) attrs.namespace = r.namespace;
    if (name !== undefined) attrs.name = name;
    this.#authz.authorize(user, attrs);

    const neg = negotiate(req.headers.accept, q);
    const render = (obj: KubeObject): unknown =>
      neg.table
        ? toTable(
            def,
            [obj],
            { resourceVersion: obj.metadata.resourceVersion },
            neg.table.include,
            neg.table.apiVersion,
          )
        : neg.metadata
          ? partialMetadata(obj, neg.metadata.apiVersion)
          : obj;
    checkMetadataForm(neg, def, r.verb === 'list');
    switch (r.verb) {
      case 'get': {
        const obj = this.#store.get(def, namespace, r.name as string);
        if (!obj) throw notFound(def, r.name as string);
        return sendJson(res, ctx, 200, render(obj));
      }
      case 'list':
        return this.#list(res, ctx, def, namespace, q, labels, fields, neg);
      case 'watch': {
        if (r.name !== undefined) fields.push({ field: 'metadata.name', value: r.name, negate: false });
        const rv = q.get('resourceVersion');
        if (rv !== null && rv !== '') checkWatchRv(rv);
        const timeout = q.get('timeoutSeconds');
        if (timeout !== null && !/^\d+$/.test(timeout))
          throw badRequest(`invalid timeoutSeconds: ${timeout}`);
        const watch = new ActiveWatch(
          this.#store,
          res,
          {
            def,
            ...(namespace !== undefined ? { namespace } : {}),
            labels,
            fields,
            resourceVersion: rv,
            bookmarks: q.get('allowWatchBookmarks') === 'true',
            ...(timeout !== null ? { timeoutSeconds: Number(timeout) } : {}),
            sendInitialEvents: q.get('sendInitialEvents') === 'true',
            render,
          },
          this.#opts.watchHooks(),
        );
        this.#opts.onWatch(watch);
        ctx.respond(200);
        watch.start();
        return;
      }
      case 'create':
        return this.#create(req, res, ctx, def, r, q);
      case 'update':
        return this.#update(req, res, ctx, def, r, q);
      case 'patch':
        return this.#patch(req, res, ctx, def, r, q);
      case 'delete':
        return this.#delete(req, res, ctx, def, namespace, r.name as string, q);
      case 'deletecollection': {
        const victims = this.#store.list(def, namespace).filter((o) => matchesAll(o, labels, fields));
        const dry = dryRun(q);
        const items = victims.map((o) =>
          this.#store.delete(def, o.metadata.namespace, o.metadata.name, { dryRun: dry }),
        );
        return sendJson(res, ctx, 200, {
          kind: `${def.kind}List`,
          apiVersion: groupVersion(def),
          metadata: { resourceVersion: String(this.#store.rv) },
          items: items.map(stripType),
        });
      }
      default:
        throw methodNotAllowed();
    }
  }

  #list(
    res: ServerResponse,
    ctx: RequestContext,
    def: ResourceDef,
    namespace: string | undefined,
    q: URLSearchParams,
    labels: LabelSelector,
    fields: FieldSelector,
    neg: Negotiated,
  ): void {
    const rvParam = q.get('resourceVersion') ?? '';
    const match = q.get('resourceVersionMatch') ?? '';
    const cont = q.get('continue') ?? '';
    if (match && !rvParam)
      throw new KubeError(
        422,
        'Invalid',
        'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided',
      );
    if (match && match !== 'Exact' && match !== 'NotOlderThan')
      throw new KubeError(
        422,
        'Invalid',
        `resourceVersionMatch: Unsupported value: "${match}": supported values: "Exact", "NotOlderThan"`,
      );
    if (cont && rvParam && rvParam !== '0')
      throw new KubeError(
        422,
        'Invalid',
        'resourceVersion: Forbidden: specifying resource version is not allowed when using continue',
      );
    let listRv = this.#store.rv;
    let items: KubeObject[];
    let start = '';
    if (cont) {
      const t = decodeContinue(cont);
      listRv = t.rv;
      start = t.start;
      items = this.#store.listAt(def, namespace, t.rv, CONTINUE_TOO_OLD, true);
    } else if (rvParam === '' || rvParam === '0') {
      // The stored objects, read only: a page of them is serialized below.
      items = this.#store.list(def, namespace, true);
    } else {
      const rv = parseRv(rvParam);
      if (rv > this.#store.rv)
        throw new KubeError(504, 'Timeout', `Too large resource version: ${rv}, current: ${this.#store.rv}`, {
          causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
          retryAfterSeconds: 1,
        });
      if (match === 'Exact') {
        listRv = rv;
        items = this.#store.listAt(
          def,
          namespace,
          rv,
          'The resourceVersion for the provided list is too old.',
          true,
        );
      } else items = this.#store.list(def, namespace, true);
    }
    items = items.filter((o) => keyOf(o) > start && matchesAll(o, labels, fields));
    const meta: Record<string, unknown> = { resourceVersion: String(listRv) };
    const limit = Number(q.get('limit') ?? '0');
    if (limit > 0 && items.length > limit) {
      const rest = items.length - limit;
      items = items.slice(0, limit);
      meta.continue = encodeContinue({ rv: listRv, start: keyOf(items[items.length - 1] as KubeObject) });
      if (labels.length === 0 && fields.length === 0) meta.remainingItemCount = rest;
    }
    if (neg.table)
      return sendJson(res, ctx, 200, toTable(def, items, meta, neg.table.include, neg.table.apiVersion));
    if (neg.metadata) {
      const apiVersion = neg.metadata.apiVersion;
      return sendJson(res, ctx, 200, {
        kind: 'PartialObjectMetadataList',
        apiVersion,
        metadata: meta,
        items: items.map((o) => partialMetadata(o, apiVersion)),
      });
    }
    sendJson(res, ctx, 200, {
      kind: `${def.kind}List`,
      apiVersion: groupVersion(def),
      metadata: meta,
      items: items.map(stripType),
    });
  }

  #requireNamespace(def: ResourceDef, r: ResourceRequest): void {
    if (!def.namespaced) return;
    if (r.namespace === undefined) throw methodNotAllowed();
    const nsDef = findResource('', 'v1', 'namespaces') as ResourceDef;
    if (!this.#store.get(nsDef, undefined, r.namespace)) throw notFound(nsDef, r.namespace);
  }

  /** Checks that the body names the same kind, namespace (defaulted from the URL) and, for updates, name as the URL. */
  #checkBody(def: ResourceDef, r: ResourceRequest, obj: KubeObject): void {
    if (
      (obj.kind !== undefined && obj.kind !== def.kind) ||
      (obj.apiVersion !== undefined && obj.apiVersion !== groupVersion(def))
    )
      throw badRequest(
        `the API version in the data (${obj.apiVersion}) does not match the expected API version (${groupVersion(def)})`,
      );
    if (def.namespaced) {
      if (obj.metadata.namespace === undefined || obj.metadata.namespace === '')
        obj.metadata.namespace = r.namespace as string;
      else if (obj.metadata.namespace !== r.namespace)
        throw badRequest(
          'the namespace of the provided object does not match the namespace sent on the request',
        );
    }
    if (r.name !== undefined && obj.metadata.name !== r.name)
      throw badRequest(
        `the name of the object (${obj.metadata.name}) does not match the name on the URL (${r.name})`,
      );
  }

  async #create(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    def: ResourceDef,
    r: ResourceRequest,
    q: URLSearchParams,
  ): Promise<void> {
    if (r.name !== undefined) throw methodNotAllowed();
    let obj = decodeObject(req, await readBody(req));
    this.#requireNamespace(def, r);
    this.#checkBody(def, r, obj);
    const dry = dryRun(q);
    if (def.group === '' && def.resource === 'pods' && this.#opts.admitPod) {
      const fieldManager = q.get('fieldManager');
      const admitted = await this.#opts.admitPod(obj, {
        namespace: r.namespace as string,
        user: { name: ctx.user, groups: groupsOf(ctx.user) },
        dryRun: dry,
        ...(fieldManager ? { fieldManager } : {}),
      });
      obj = admitted.pod;
      // kubectl and client-go print each one as "Warning: MESSAGE".
      if (admitted.warnings.length > 0) res.setHeader('Warning', admitted.warnings.map(warningHeader));
    }
    sendJson(res, ctx, 201, this.#store.create(def, obj, { dryRun: dry, manager: updater(req, q) }));
  }

  async #update(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    def: ResourceDef,
    r: ResourceRequest,
    q: URLSearchParams,
  ): Promise<void> {
    if (r.name === undefined) throw methodNotAllowed();
    const obj = decodeObject(req, await readBody(req));
    this.#checkBody(def, r, obj);
    // Kinds whose strategy refuses unconditional updates (AllowUnconditionalUpdate false: Leases) need the
    // resourceVersion they were read at.
    if (def.conditionalUpdateOnly && !obj.metadata.resourceVersion)
      throw invalidCauses(
        def.resource,
        r.name,
        [
          {
            reason: 'FieldValueInvalid',
            message: 'Invalid value: 0: must be specified for an update',
            field: 'metadata.resourceVersion',
          },
        ],
        def.group,
      );
    sendJson(res, ctx, 200, this.#store.update(def, obj, { dryRun: dryRun(q), manager: updater(req, q) }));
  }

  async #patch(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    def: ResourceDef,
    r: ResourceRequest,
    q: URLSearchParams,
  ): Promise<void> {
    if (r.name === undefined) throw methodNotAllowed();
    const body = (await readBody(req)).toString('utf8');
    const contentType = req.headers['content-type'] ?? '';
    const namespace = def.namespaced ? r.namespace : undefined;
    const apply = contentType.startsWith('application/apply-patch+yaml');
    if (apply && !q.get('fieldManager'))
      throw new KubeError(
        422,
        'Invalid',
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
      );
    const existing = this.#store.get(def, namespace, r.name);
    const dry = dryRun(q);
    const manager: FieldManager = apply
      ? {
          manager: managerName(q.get('fieldManager'), undefined),
          operation: 'Apply',
          applied: applyPatch(contentType, {}, body),
        }
      : updater(req, q);
    if (!existing) {
      if (!apply) throw notFound(def, r.name);
      this.#requireNamespace(def, r);
      const obj = applyPatch(contentType, {}, body) as KubeObject;
      obj.metadata ??= { name: r.name };
      this.#checkBody(def, r, obj);
      return sendJson(res, ctx, 201, this.#store.create(def, obj, { dryRun: dry, manager }));
    }
    const patched = applyPatch(contentType, existing, body) as KubeObject;
    if (typeof patched !== 'object' || patched === null || typeof patched.metadata !== 'object')
      throw badRequest('the patch produced an invalid object');
    this.#checkBody(def, r, patched);
    sendJson(res, ctx, 200, this.#store.update(def, patched, { dryRun: dry, manager }));
  }

  async #delete(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    def: ResourceDef,
    namespace: string | undefined,
    name: string,
    q: URLSearchParams,
  ): Promise<void> {
    const body = (await readBody(req)).toString('utf8');
    let options: { preconditions?: { uid?: string; resourceVersion?: string }; dryRun?: string[] } = {};
    if (body.trim() !== '') {
      try {
        options = JSON.parse(body) as typeof options;
      } catch {
        throw badRequest('error decoding DeleteOptions: not valid JSON');
      }
    }
    const dry = dryRun(q) || (options.dryRun ?? []).includes('All');
    const gone = this.#store.delete(def, namespace, name, {
      dryRun: dry,
      ...(options.preconditions ? { preconditions: options.preconditions } : {}),
    });
    if (def.returnsDeletedObject) return sendJson(res, ctx, 200, gone);
    const details: Record<string, unknown> = { name, kind: def.resource, uid: gone.metadata.uid };
    if (def.group) details.group = def.group;
    sendJson(res, ctx, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details });
  }
}

/** An HTTP write's field manager: `?fieldManager=`, else the User-Agent's product. */
function updater(req: IncomingMessage, q: URLSearchParams): FieldManager {
  return { manager: managerName(q.get('fieldManager'), req.headers['user-agent']), operation: 'Update' };
}

/** The groups the real authenticators give: service accounts get theirs, everyone else is an admin here. */
function groupsOf(user: string): string[] {
  const sa = /^system:serviceaccount:([^:]+):/.exec(user);
  if (sa)
    return ['system:serviceaccounts', `system:serviceaccounts:${sa[1] as string}`, 'system:authenticated'];
  return ['system:masters', 'system:authenticated'];
}

/**
 * RFC 7234 warning: code 299, agent "-", the text quoted. node:http sends U+0080-U+00FF as UTF-8 (as Go sends
 * the whole text) but refuses anything above, which becomes "?" here; control characters become spaces.
 */
function warningHeader(text: string): string {
  const safe = [...text]
    .map((c) => {
      const code = c.codePointAt(0) as number;
      return code < 0x20 || code === 0x7f ? ' ' : code > 0xff ? '?' : c;
    })
    .join('');
  return `299 - "${safe.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function matchesAll(obj: KubeObject, labels: LabelSelector, fields: FieldSelector): boolean {
  return matchesLabels(labels, obj) && matchesFields(fields, obj);
}
