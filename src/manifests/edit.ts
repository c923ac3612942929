import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type Pair } from 'yaml';
import { isObject, jsonEqual } from '../injection/json.ts';
import { parseYaml } from './read.ts';
import { blockLines, flowText, isBlockCollection, type RenderStyle } from './render.ts';
import { keyString, resolvePlain } from './scalars.ts';

/**
 * Writes a change to one document into its text, touching only the text of what changed: comments, quoting,
 * flow style, indentation and key order everywhere else stay as they were. `before` is what kubectl reads from
 * the text; `after` is the same value with the changes, sharing every unchanged subtree with `before` (===), so
 * that only the paths to the changes are walked. Keys added to a map go at its end (or where a removed key was),
 * list items where the change put them, in the style of the collection they join (block, flow, JSON).
 *
 * The result is checked by the caller, who reads it back; a node that cannot be edited in place (an alias, a map
 * with merge keys) is rewritten whole.
 */

type YNode = { range?: [number, number, number] | null; srcToken?: unknown };
type Parent =
  { kind: 'root' } | { kind: 'pair'; map: YMap; pair: Pair } | { kind: 'item'; seq: YSeq; index: number };
type YMap = YNode & { items: Pair[]; flow?: boolean };
type YSeq = YNode & { items: unknown[]; flow?: boolean };

interface Edit {
  start: number;
  end: number;
  text: string;
  /** Nesting depth of the collection edited: at one offset, outer insertions go after inner ones. */
  depth: number;
}

class Unsafe extends Error {}

const rangeOf = (node: unknown): [number, number, number] => {
  const range = (node as YNode | null)?.range;
  if (!range) throw new Unsafe('a node without a position');
  return range;
};

export function editDocument(text: string, json: boolean, before: unknown, after: unknown): string {
  const docs: Document.Parsed[] = parseYaml(text);
  const doc = docs[0];
  if (doc === undefined || docs.length !== 1)
    throw new Error('the document to edit did not parse as one document');
  const editor = new Editor(text, json, detectStyle(text, doc, json));
  editor.diff(doc.contents, before, after, { kind: 'root' }, 0);
  return editor.apply();
}

/** The indentation habits of the document, for the lines added to it. */
function detectStyle(text: string, doc: Document.Parsed, json: boolean): RenderStyle {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const column = (offset: number): number => offset - (text.lastIndexOf('\n', offset - 1) + 1);
  let unit: number | undefined;
  let seqIndent: number | undefined;
  // Breadth-first over the first few hundred nodes: enough to see how maps and lists are indented.
  const queue: unknown[] = [doc.contents];
  for (
    let seen = 0;
    queue.length > 0 && seen < 500 && (unit === undefined || seqIndent === undefined);
    seen++
  ) {
    const node = queue.shift();
    if (isMap(node)) {
      for (const pair of node.items) {
        const value = pair.value;
        const keyRange = (pair.key as YNode | null)?.range;
        const valueRange = (value as YNode | null)?.range;
        if (keyRange && valueRange && !node.flow) {
          if (isMap(value) && !value.flow && unit === undefined && value.items[0]) {
            const childKey = (value.items[0].key as YNode | null)?.range;
            if (childKey) unit = column(childKey[0]) - column(keyRange[0]);
          }
          if (isSeq(value) && !value.flow && seqIndent === undefined) {
            let dash: number | undefined;
            try {
              dash = dashOffsets(value)[0];
            } catch {
              // a sequence whose dashes cannot be told: look at the next one
            }
            if (dash !== undefined) seqIndent = column(dash) - column(keyRange[0]);
          }
        }
        if (queue.length < 500) queue.push(value);
      }
    } else if (isSeq(node)) for (const item of node.items.slice(0, 500)) queue.push(item);
  }
  if (json) {
    const second = /\n( +)\S/.exec(text);
    unit = second?.[1]?.length ?? 2;
  }
  unit = unit !== undefined && unit > 0 && unit <= 8 ? unit : 2;
  seqIndent = seqIndent !== undefined && seqIndent >= 0 && seqIndent <= 8 ? seqIndent : unit;
  return { json, unit, seqIndent, eol };
}

/** The offsets of a block sequence's dashes, one per item, from its source tokens. */
function dashOffsets(seq: YSeq): number[] {
  const token = seq.srcToken as { items?: { start: { type: string; offset: number }[] }[] } | undefined;
  const dashes: number[] = [];
  for (const item of token?.items ?? []) {
    const dash = item.start.find((t) => t.type === 'seq-item-ind');
    if (dash !== undefined) dashes.push(dash.offset);
  }
  if (dashes.length !== seq.items.length) throw new Unsafe('the dashes of a block sequence do not line up');
  return dashes;
}

/** The JSON key kubectl makes of a pair's key, or undefined when it is not a plain scalar key. */
function pairKey(pair: Pair): string | undefined {
  const key = pair.key;
  if (!isScalar(key)) return undefined;
  const text = String(key.value);
  if (key.tag !== undefined) return key.tag === 'tag:yaml.org,2002:str' ? text : undefined;
  return keyString(key.type === 'PLAIN' ? resolvePlain(text) : { kind: 'str' }, text);
}

const isMergePair = (pair: Pair): boolean =>
  isScalar(pair.key) && pair.key.type === 'PLAIN' && pair.key.tag === undefined && pair.key.value === '<<';

class Editor {
  private readonly edits: Edit[] = [];

  private readonly text: string;
  private readonly json: boolean;
  private readonly style: RenderStyle;

  constructor(text: string, json: boolean, style: RenderStyle) {
    this.text = text;
    this.json = json;
    this.style = style;
  }

  apply(): string {
    // From the end, so that earlier offsets stay valid; at one offset the outer (shallower) insertion first, so
    // that the inner one, inserted after it at the same offset, ends up before it.
    const sorted = [...this.edits].sort((a, b) => b.start - a.start || a.depth - b.depth);
    let out = this.text;
    let limit = Infinity;
    for (const edit of sorted) {
      if (edit.end > limit) throw new Error('overlapping edits');
      out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
      limit = edit.start;
    }
    return out;
  }

  diff(node: unknown, before: unknown, after: unknown, parent: Parent, depth: number): void {
    if (before === after) return;
    const mark = this.edits.length;
    try {
      if (isAlias(node)) throw new Unsafe('an alias');
      if (isMap(node) && isObject(before) && isObject(after))
        this.diffMap(node as YMap, before, after, depth);
      else if (isSeq(node) && Array.isArray(before) && Array.isArray(after))
        this.diffSeq(node as YSeq, before, after, depth);
      else this.replace(node, after, parent, depth);
    } catch (err) {
      if (!(err instanceof Unsafe)) throw err;
      // Whatever was edited inside the node goes with it.
      this.edits.length = mark;
      this.replace(node, after, parent, depth);
    }
  }

  // ---- positions ----

  private lineStart(offset: number): number {
    return this.text.lastIndexOf('\n', offset - 1) + 1;
  }

  private column(offset: number): number {
    return offset - this.lineStart(offset);
  }

  /** The offset just after the line that holds `offset - 1` (content ending at `offset`), newline included. */
  private lineEndAfter(offset: number): number {
    if (offset > 0 && this.text[offset - 1] === '\n') return offset;
    const newline = this.text.indexOf('\n', offset);
    return newline === -1 ? this.text.length : newline + 1;
  }

  /** Text inserted at `offset` that must start on a line of its own. */
  private atLineStart(offset: number, text: string): string {
    return offset > 0 && this.text[offset - 1] !== '\n' ? this.style.eol + text : text;
  }

  private pairStart(pair: Pair): number {
    return rangeOf(pair.key)[0];
  }

  /** Where a pair's content ends (its value's, or its key's when the value is empty), before any comment. */
  private pairContentEnd(pair: Pair): number {
    const keyEnd = rangeOf(pair.key)[1];
    const value = pair.value as YNode | null;
    return value?.range ? Math.max(keyEnd, value.range[1]) : keyEnd;
  }

  private multiline(collection: YNode, firstItemStart: number): boolean {
    return this.text.slice(rangeOf(collection)[0], firstItemStart).includes('\n');
  }

  private render(lines: string[]): string {
    return lines.join(this.style.eol) + this.style.eol;
  }

  // ---- maps ----

  private diffMap(
    node: YMap,
    before: Record<string, unknown>,
    after: Record<string, unknown>,
    depth: number,
  ): void {
    if (node.items.some((pair) => !isPair(pair) || isMergePair(pair) || pairKey(pair) === undefined))
      throw new Unsafe('merge keys or complex keys');
    const pairs = new Map<string, Pair[]>();
    for (const pair of node.items) {
      const key = pairKey(pair) as string;
      const same = pairs.get(key);
      if (same === undefined) pairs.set(key, [pair]);
      else same.push(pair);
    }
    const removed: Pair[] = [];
    for (const key of Object.keys(before))
      if (!Object.hasOwn(after, key) || after[key] === undefined) removed.push(...(pairs.get(key) ?? []));
    const added: [string, unknown][] = [];
    for (const [key, value] of Object.entries(after)) {
      if (value === undefined) continue;
      if (!Object.hasOwn(before, key)) {
        added.push([key, value]);
        continue;
      }
      if (before[key] === value) continue;
      const found = pairs.get(key) ?? [];
      const pair = found[found.length - 1];
      if (pair === undefined) throw new Unsafe('a key that is not in the map');
      // Earlier duplicates of the key would show through once the last one changes: rewrite the map.
      if (found.length > 1) throw new Unsafe('a duplicate key');
      if (pair.value === null) this.replacePairValue(node, pair, value, depth);
      else this.diff(pair.value, before[key], value, { kind: 'pair', map: node, pair }, depth + 1);
    }
    if (removed.length === 0 && added.length === 0) return;
    removed.sort((a, b) => this.pairStart(a) - this.pairStart(b));
    if (removed.length > 1 || (removed.length === 1 && added.length === 0)) {
      // Several removals could overlap in the text; no injection makes them, so the map is rewritten.
      throw new Unsafe('keys removed');
    }
    if (node.flow || this.json) this.flowMapEdit(node, removed[0], added, depth);
    else this.blockMapEdit(node, removed[0], added, depth);
  }

  private blockMapEdit(
    node: YMap,
    replaced: Pair | undefined,
    added: [string, unknown][],
    depth: number,
  ): void {
    const first = node.items[0];
    if (first === undefined) throw new Unsafe('an empty block map');
    const column = this.column(this.pairStart(first));
    let lines = blockLines(Object.fromEntries(added), column, this.style);
    const replacedValue = replaced?.value;
    if ((isMap(replacedValue) || isSeq(replacedValue)) && replacedValue.flow) {
      // `secret: {secretName: x}` becomes `emptyDir: {medium: Memory}`, in the flow style it was written in.
      lines = added.map(
        ([key, value]) => `${' '.repeat(column)}${flowText(key, this.style)}: ${flowText(value, this.style)}`,
      );
    }
    if (replaced !== undefined) {
      // The new keys take the removed key's place: `configMap: {...}` becomes `emptyDir: {}`.
      const start = this.pairStart(replaced);
      const end = this.lineEndAfter(this.pairContentEnd(replaced));
      lines[0] = (lines[0] ?? '').slice(column);
      this.edits.push({ start, end, text: this.render(lines), depth });
      return;
    }
    const last = node.items[node.items.length - 1] as Pair;
    const at = this.lineEndAfter(this.pairContentEnd(last));
    this.edits.push({ start: at, end: at, text: this.atLineStart(at, this.render(lines)), depth });
  }

  private flowMapEdit(
    node: YMap,
    replaced: Pair | undefined,
    added: [string, unknown][],
    depth: number,
  ): void {
    const first = node.items[0];
    if (first === undefined) throw new Unsafe('an empty flow map');
    const firstStart = this.pairStart(first);
    const pretty = this.multiline(node, firstStart);
    const column = this.column(firstStart);
    const separator = pretty ? `,${this.style.eol}${' '.repeat(column)}` : ', ';
    const rendered = added
      .map(
        ([key, value]) =>
          `${flowText(key, this.style)}: ${flowText(value, this.style, pretty ? { column, unit: this.style.unit } : undefined)}`,
      )
      .join(separator);
    if (replaced !== undefined) {
      const start = this.pairStart(replaced);
      this.edits.push({ start, end: this.pairContentEnd(replaced), text: rendered, depth });
      return;
    }
    const at = this.pairContentEnd(node.items[node.items.length - 1] as Pair);
    this.edits.push({ start: at, end: at, text: separator + rendered, depth });
  }

  // ---- sequences ----

  private diffSeq(node: YSeq, before: unknown[], after: unknown[], depth: number): void {
    if (node.items.length !== before.length) throw new Unsafe('items that do not line up');
    if (after.length < before.length) throw new Unsafe('items removed');
    const added = after.length - before.length;
    if (
      added > 0 &&
      before.every((item, i) => item === after[i + added] || jsonEqual(item, after[i + added]))
    ) {
      this.insertItems(node, 0, after.slice(0, added), depth);
      return;
    }
    before.forEach((item, i) => {
      if (item !== after[i])
        this.diff(node.items[i], item, after[i], { kind: 'item', seq: node, index: i }, depth + 1);
    });
    if (added > 0) this.insertItems(node, before.length, after.slice(before.length), depth);
  }

  private insertItems(node: YSeq, index: number, items: unknown[], depth: number): void {
    if (node.items.length === 0) throw new Unsafe('an empty sequence');
    if (node.items.some((item) => isPair(item))) throw new Unsafe('pairs in a sequence');
    if (node.flow || this.json) {
      const firstStart = rangeOf(node.items[0])[0];
      const pretty = this.multiline(node, firstStart);
      const column = this.column(firstStart);
      const separator = pretty ? `,${this.style.eol}${' '.repeat(column)}` : ', ';
      const rendered = items
        .map((item) => flowText(item, this.style, pretty ? { column, unit: this.style.unit } : undefined))
        .join(separator);
      if (index === 0)
        this.edits.push({ start: firstStart, end: firstStart, text: rendered + separator, depth });
      else {
        const at = rangeOf(node.items[node.items.length - 1])[1];
        this.edits.push({ start: at, end: at, text: separator + rendered, depth });
      }
      return;
    }
    const dashes = dashOffsets(node);
    const column = this.column(dashes[0] as number);
    const lines = blockLines(items, column, this.style);
    if (index === 0) {
      // Before the first dash, which keeps its column on the line after the inserted items.
      const at = dashes[0] as number;
      lines[0] = (lines[0] ?? '').slice(column);
      this.edits.push({ start: at, end: at, text: this.render(lines) + ' '.repeat(column), depth });
      return;
    }
    const lastItem = node.items[node.items.length - 1] as YNode | null;
    const lastEnd = lastItem?.range ? lastItem.range[1] : (dashes[dashes.length - 1] as number) + 1;
    const at = this.lineEndAfter(lastEnd);
    this.edits.push({ start: at, end: at, text: this.atLineStart(at, this.render(lines)), depth });
  }

  // ---- whole values ----

  /** Rewrites a node (and only it) with a new value, in the style of the collection that holds it. */
  private replace(node: unknown, value: unknown, parent: Parent, depth: number): void {
    if (parent.kind === 'pair') {
      this.replacePairValue(parent.map, parent.pair, value, depth);
      return;
    }
    if (parent.kind === 'item') {
      this.replaceItem(parent.seq, parent.index, value, depth);
      return;
    }
    // The document itself.
    const [start, end] = rangeOf(node);
    if (this.json || ((isMap(node) || isSeq(node)) && (node as YMap).flow)) {
      const column = this.column(start);
      const pretty = this.text.slice(start, end).includes('\n');
      this.edits.push({
        start,
        end,
        text: flowText(value, this.style, pretty ? { column, unit: this.style.unit } : undefined),
        depth,
      });
      return;
    }
    const column = this.column(start);
    const lines = blockLines(value, column, this.style);
    lines[0] = (lines[0] ?? '').slice(column);
    this.edits.push({ start, end: this.lineEndAfter(end), text: this.render(lines), depth });
  }

  private replacePairValue(map: YMap, pair: Pair, value: unknown, depth: number): void {
    const keyEnd = rangeOf(pair.key)[1];
    const valueNode = pair.value as YNode | null;
    if (map.flow || this.json) {
      const start = valueNode?.range ? valueNode.range[0] : keyEnd;
      const end = valueNode?.range ? valueNode.range[1] : keyEnd;
      const firstStart = this.pairStart(map.items[0] as Pair);
      const pretty = this.multiline(map, firstStart);
      const text = flowText(
        value,
        this.style,
        pretty ? { column: this.column(this.pairStart(pair)), unit: this.style.unit } : undefined,
      );
      this.edits.push({ start, end, text: valueNode?.range ? text : `: ${text}`, depth });
      return;
    }
    // From just after the ':' to the end of the value's last line.
    const colon = /^[ \t]*:/.exec(this.text.slice(keyEnd, keyEnd + 200));
    if (colon === null) throw new Error('no ":" after a key');
    const start = keyEnd + colon[0].length;
    const end = this.lineEndAfter(this.pairContentEnd(pair));
    const column = this.column(this.pairStart(pair));
    let text: string;
    if (isBlockCollection(value)) {
      const inner = column + (Array.isArray(value) ? this.style.seqIndent : this.style.unit);
      text = this.style.eol + this.render(blockLines(value, inner, this.style));
    } else text = ` ${(blockLines(value, 0, this.style)[0] ?? '').trimStart()}${this.style.eol}`;
    this.edits.push({ start, end, text, depth });
  }

  private replaceItem(seq: YSeq, index: number, value: unknown, depth: number): void {
    const item = seq.items[index];
    if (seq.flow || this.json) {
      const [start, end] = rangeOf(item);
      const firstStart = rangeOf(seq.items[0])[0];
      const pretty = this.multiline(seq, firstStart);
      const text = flowText(
        value,
        this.style,
        pretty ? { column: this.column(start), unit: this.style.unit } : undefined,
      );
      this.edits.push({ start, end, text, depth });
      return;
    }
    const dash = dashOffsets(seq)[index] as number;
    const column = this.column(dash);
    const itemRange = (item as YNode | null)?.range;
    const end = this.lineEndAfter(itemRange ? itemRange[1] : dash + 1);
    const lines = blockLines([value], column, this.style);
    lines[0] = (lines[0] ?? '').slice(column + 1);
    this.edits.push({ start: dash + 1, end, text: this.render(lines), depth });
  }
}

export { Unsafe };
