/**
 * Kubernetes resource quantities (`10m`, `48Mi`, `1.5`, `2e3`), as the API server accepts them, parsed to a
 * number of base units so a request can be compared with its limit. Precision beyond a double is irrelevant here.
 */

const QUANTITY_RE = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The quantity's value in base units, or undefined when the text is not a quantity. */
export function parseQuantity(text: string): number | undefined {
  const m = QUANTITY_RE.exec(text);
  if (!m) return undefined;
  const [, number, suffix = ''] = m as unknown as [string, string, string | undefined];
  const scale = /^[eE][+-]?\d+$/.test(suffix) ? 10 ** Number(suffix.slice(1)) : SUFFIX[suffix];
  if (scale === undefined) return undefined;
  return Number(number) * scale;
}

/** Why `text` cannot be a container resource quantity, or undefined when it can. */
export function quantityProblem(text: string): string | undefined {
  const value = parseQuantity(text);
  if (value === undefined) return `"${text}" is not a Kubernetes quantity such as 10m, 0.5, 48Mi or 1Gi`;
  if (value < 0) return `"${text}" must not be negative`;
  return undefined;
}
