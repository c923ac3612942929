import { KubeError } from './status.ts';

/**
 * Decodes the Kubernetes protobuf envelope for the few kinds kubectl's typed commands send that way
 * (`kubectl create secret|configmap|namespace|serviceaccount` use Content-Type application/vnd.kubernetes.protobuf).
 * Only the fields those commands set are in the schemas; responses stay JSON, which clients accept.
 */
export const PROTOBUF_TYPE = 'application/vnd.kubernetes.protobuf';

type FieldType = 'string' | 'bytes' | 'bool' | 'int64' | 'message' | 'map-string' | 'map-bytes' | 'time';
interface Field {
  name: string;
  type: FieldType;
  repeated?: boolean;
  schema?: Schema;
}
type Schema = Record<number, Field>;

const OWNER_REFERENCE: Schema = {
  1: { name: 'kind', type: 'string' },
  3: { name: 'name', type: 'string' },
  4: { name: 'uid', type: 'string' },
  5: { name: 'apiVersion', type: 'string' },
  6: { name: 'controller', type: 'bool' },
  7: { name: 'blockOwnerDeletion', type: 'bool' },
};
const OBJECT_META: Schema = {
  1: { name: 'name', type: 'string' },
  2: { name: 'generateName', type: 'string' },
  3: { name: 'namespace', type: 'string' },
  5: { name: 'uid', type: 'string' },
  6: { name: 'resourceVersion', type: 'string' },
  7: { name: 'generation', type: 'int64' },
  8: { name: 'creationTimestamp', type: 'time' },
  11: { name: 'labels', type: 'map-string' },
  12: { name: 'annotations', type: 'map-string' },
  13: { name: 'ownerReferences', type: 'message', repeated: true, schema: OWNER_REFERENCE },
  14: { name: 'finalizers', type: 'string', repeated: true },
};
const OBJECT_REFERENCE: Schema = {
  1: { name: 'kind', type: 'string' },
  2: { name: 'namespace', type: 'string' },
  3: { name: 'name', type: 'string' },
  4: { name: 'uid', type: 'string' },
  5: { name: 'apiVersion', type: 'string' },
  6: { name: 'resourceVersion', type: 'string' },
  7: { name: 'fieldPath', type: 'string' },
};
const KINDS: Record<string, Schema> = {
  'v1/Secret': {
    1: { name: 'metadata', type: 'message', schema: OBJECT_META },
    2: { name: 'data', type: 'map-bytes' },
    3: { name: 'type', type: 'string' },
    4: { name: 'stringData', type: 'map-string' },
    5: { name: 'immutable', type: 'bool' },
  },
  'v1/ConfigMap': {
    1: { name: 'metadata', type: 'message', schema: OBJECT_META },
    2: { name: 'data', type: 'map-string' },
    3: { name: 'binaryData', type: 'map-bytes' },
    4: { name: 'immutable', type: 'bool' },
  },
  'v1/Namespace': {
    1: { name: 'metadata', type: 'message', schema: OBJECT_META },
    2: {
      name: 'spec',
      type: 'message',
      schema: { 1: { name: 'finalizers', type: 'string', repeated: true } },
    },
    3: { name: 'status', type: 'message', schema: { 1: { name: 'phase', type: 'string' } } },
  },
  'v1/ServiceAccount': {
    1: { name: 'metadata', type: 'message', schema: OBJECT_META },
    2: { name: 'secrets', type: 'message', repeated: true, schema: OBJECT_REFERENCE },
    3: {
      name: 'imagePullSecrets',
      type: 'message',
      repeated: true,
      schema: { 1: { name: 'name', type: 'string' } },
    },
    4: { name: 'automountServiceAccountToken', type: 'bool' },
  },
};
const UNKNOWN: Schema = {
  1: {
    name: 'typeMeta',
    type: 'message',
    schema: { 1: { name: 'apiVersion', type: 'string' }, 2: { name: 'kind', type: 'string' } },
  },
  2: { name: 'raw', type: 'bytes' },
};
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

class Reader {
  pos = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++] as number;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  }
  bytes(): Buffer {
    const len = this.varint();
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function mapEntry(buf: Buffer): [string, Buffer] {
  const r = new Reader(buf);
  let key = '';
  let value: Buffer = Buffer.alloc(0);
  while (r.pos < buf.length) {
    const tag = r.varint();
    if (tag >> 3 === 1) key = r.bytes().toString('utf8');
    else if (tag >> 3 === 2) value = r.bytes();
    else r.skip(tag & 7);
  }
  return [key, value];
}

function decodeMessage(buf: Buffer, schema: Schema): Record<string, unknown> {
  const r = new Reader(buf);
  const out: Record<string, unknown> = {};
  while (r.pos < buf.length) {
    const tag = r.varint();
    const field = schema[tag >> 3];
    if (!field) {
      r.skip(tag & 7);
      continue;
    }
    let value: unknown;
    switch (field.type) {
      case 'string':
        value = r.bytes().toString('utf8');
        break;
      case 'bytes':
        value = r.bytes();
        break;
      case 'bool':
        value = r.varint() !== 0;
        break;
      case 'int64':
        value = r.varint();
        break;
      case 'message':
        value = decodeMessage(r.bytes(), field.schema as Schema);
        break;
      case 'time': {
        // Go's zero time (a negative varint) and the epoch both mean "unset", as JSON's null does.
        const seconds = Number(decodeMessage(r.bytes(), { 1: { name: 's', type: 'int64' } }).s ?? 0);
        if (seconds <= 0 || seconds > 1e11) continue;
        value = new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
        break;
      }
      case 'map-string':
      case 'map-bytes': {
        const [k, v] = mapEntry(r.bytes());
        const map = (out[field.name] ??= {}) as Record<string, string>;
        map[k] = field.type === 'map-bytes' ? v.toString('base64') : v.toString('utf8');
        continue;
      }
    }
    // gogo-protobuf writes every non-pointer field; JSON's omitempty drops the empty ones.
    if (!field.repeated && (value === '' || value === 0)) continue;
    if (field.repeated) ((out[field.name] ??= []) as unknown[]).push(value);
    else out[field.name] = value;
  }
  return out;
}

/** The JSON form of a protobuf-encoded request body, or 415 for a kind this server cannot decode. */
export function decodeProtobuf(body: Buffer): Record<string, unknown> {
  if (!body.subarray(0, 4).equals(MAGIC))
    throw new KubeError(
      400,
      'BadRequest',
      'provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]',
    );
  const unknown = decodeMessage(body.subarray(4), UNKNOWN);
  const tm = (unknown.typeMeta ?? {}) as { apiVersion?: string; kind?: string };
  const schema = KINDS[`${tm.apiVersion}/${tm.kind}`];
  if (!schema)
    throw new KubeError(
      415,
      'UnsupportedMediaType',
      `the test API server cannot decode ${tm.apiVersion} ${tm.kind} from protobuf; send application/json`,
    );
  return { apiVersion: tm.apiVersion, kind: tm.kind, ...decodeMessage(unknown.raw as Buffer, schema) };
}
