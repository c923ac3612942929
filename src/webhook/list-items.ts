/**
 * Reads a Kubernetes list answer (`{"kind":…,"metadata":{…},"items":[{…},{…}]}`) as it arrives, one item at a time:
 * each element of the top-level `items` array is parsed on its own and handed to `onItem`, and the rest (kind,
 * apiVersion, metadata with `continue`) is parsed at the end with `items` left empty. A page of 500 pods' metadata
 * is a megabyte or two of JSON: parsed whole, it held the event loop (which also answers admission) for tens of
 * milliseconds and needed the whole text, its copy and every parsed object at once; item by item, it needs one
 * network chunk and one item, and no step takes longer than a chunk.
 *
 * The scan works on bytes: JSON's structural characters are ASCII, and UTF-8 never uses bytes below 0x80 inside a
 * multi-byte character, so a brace in a string is the only thing to tell apart (by tracking strings and escapes).
 */
export class ListItemSplitter {
  private readonly onItem: (item: unknown) => void;
  /** Nesting depth of objects and arrays, outside the items' own. */
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The top level's last string (a key, when a ':' follows), to know which array is `items`. */
  private lastTopString = '';
  private topString: number[] | undefined;
  /** Inside the top-level `items` array: its depth, and the item being read (its byte slices), if any. */
  private itemsDepth = -1;
  private itemStartDepth = -1;
  private itemParts: Buffer[] = [];
  private itemStart = -1;
  /** Everything outside the items, to parse at the end. */
  private readonly envelope: Buffer[] = [];
  private envelopeStart = 0;
  private done = false;
  /** How many items were handed over. */
  count = 0;

  constructor(onItem: (item: unknown) => void) {
    this.onItem = onItem;
  }

  write(chunk: Buffer): void {
    this.envelopeStart = 0;
    if (this.itemStart < 0 && this.itemParts.length > 0) this.itemStart = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i] as number;
      if (this.inString) {
        if (this.topString && this.itemsDepth < 0) this.topString.push(c);
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c /* \ */) this.escaped = true;
        else if (c === 0x22 /* " */) {
          this.inString = false;
          if (this.topString) {
            this.lastTopString = Buffer.from(this.topString.slice(0, -1)).toString('utf8');
            this.topString = undefined;
          }
        }
        continue;
      }
      if (c === 0x22) {
        this.inString = true;
        if (this.depth === 1 && this.itemsDepth < 0) this.topString = [];
        continue;
      }
      if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
        if (this.itemsDepth >= 0 && this.depth === this.itemsDepth && this.itemStartDepth < 0) {
          // An element of items begins.
          this.itemStartDepth = this.depth;
          this.itemStart = i;
          this.itemParts = [];
        } else if (c === 0x5b && this.depth === 1 && this.itemsDepth < 0 && this.lastTopString === 'items') {
          // The items array: its content stays out of the envelope.
          this.envelope.push(chunk.subarray(this.envelopeStart, i + 1));
          this.itemsDepth = this.depth + 1;
        }
        this.depth++;
        continue;
      }
      if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        this.depth--;
        if (this.itemStartDepth >= 0 && this.depth === this.itemStartDepth) {
          this.itemParts.push(chunk.subarray(this.itemStart, i + 1));
          this.emit();
          this.itemStartDepth = -1;
          this.itemStart = -1;
        } else if (this.itemsDepth >= 0 && this.depth === this.itemsDepth - 1 && c === 0x5d) {
          // The end of items: the envelope goes on from its closing bracket.
          this.itemsDepth = -2; // seen, and closed
          this.envelopeStart = i;
        }
      }
    }
    if (this.itemStartDepth >= 0) {
      this.itemParts.push(chunk.subarray(this.itemStart < 0 ? 0 : this.itemStart));
      this.itemStart = -1;
    }
    if (this.itemsDepth === -1 || this.itemsDepth === -2)
      this.envelope.push(chunk.subarray(this.envelopeStart));
    this.envelopeStart = 0;
  }

  /** The list without its items (they went to onItem). Throws on JSON that is cut short or invalid. */
  end(): Record<string, unknown> {
    if (this.done) throw new Error('ended twice');
    this.done = true;
    if (this.depth !== 0 || this.inString || this.itemStartDepth >= 0)
      throw new SyntaxError('the list answer ends inside a value');
    const text = Buffer.concat(this.envelope).toString('utf8');
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new SyntaxError('the list answer is not an object');
    return parsed as Record<string, unknown>;
  }

  private emit(): void {
    const text = (this.itemParts.length === 1 ? this.itemParts[0] : Buffer.concat(this.itemParts)) as Buffer;
    this.itemParts = [];
    this.count++;
    this.onItem(JSON.parse(text.toString('utf8')));
  }
}
