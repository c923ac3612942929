/** Figures, the table printed at the end, and the JSON/Markdown written to bench/results/. */
import { cpus, loadavg, release, totalmem } from 'node:os';

export interface Goal {
  op: '<=' | '>=';
  value: number;
}

export interface Figure {
  section: string;
  /** Stable identifier, e.g. `admission.typical.ratio`. */
  id: string;
  label: string;
  value: number;
  unit: string;
  goal?: Goal;
  /** Set when the figure has a goal. */
  pass?: boolean;
  /** Supporting numbers, shown after the value. */
  note?: string;
}

export function figure(f: Omit<Figure, 'pass'>): Figure {
  if (!f.goal) return f;
  const pass =
    Number.isFinite(f.value) && (f.goal.op === '<=' ? f.value <= f.goal.value : f.value >= f.goal.value);
  return { ...f, pass };
}

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  /** 1-minute load average when the run started and ended: other work on the machine shows here. */
  loadAverageStart: number;
  loadAverageEnd?: number;
}

export function machine(): Machine {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    loadAverageStart: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}

export interface Results {
  date: string;
  machine: Machine;
  mode: 'full' | 'quick';
  runtime: string;
  sections: string[];
  note?: string;
  durationS: number;
  figures: Figure[];
  /** Per-section raw measurements (every round, every sample), for whoever wants to look closer. */
  details: Record<string, unknown>;
}

export function formatValue(value: number, unit: string): string {
  if (!Number.isFinite(value)) return 'n/a';
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : Math.abs(value) >= 1 ? 2 : 3;
  return `${value.toFixed(digits)}${unit ? ` ${unit}` : ''}`;
}

function formatGoal(f: Figure): string {
  return f.goal ? `${f.goal.op} ${formatValue(f.goal.value, f.unit)}` : '';
}

function status(f: Figure): string {
  return f.pass === undefined ? '' : f.pass ? 'pass' : 'MISS';
}

export function textTable(figures: Figure[]): string {
  const rows = figures.map((f) => [
    f.label,
    formatValue(f.value, f.unit),
    formatGoal(f),
    status(f),
    f.note ?? '',
  ]);
  const head = ['figure', 'value', 'goal', '', 'detail'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => (i === 1 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  const out: string[] = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  let section = '';
  for (const [i, f] of figures.entries()) {
    if (f.section !== section) {
      section = f.section;
      out.push(`[${section}]`);
    }
    out.push(line(rows[i] as string[]));
  }
  return out.join('\n');
}

export function markdown(results: Results): string {
  const m = results.machine;
  const lines = [
    `# Benchmark results`,
    '',
    `- Date: ${results.date}`,
    `- Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}`,
    `- Node: ${m.node}; the CLI ran ${results.runtime === 'compiled' ? 'compiled by tsc (as in the image)' : results.runtime === 'source' ? 'from the TypeScript source (type stripping)' : results.runtime}`,
    `- Mode: ${results.mode}; sections: ${results.sections.join(', ')}; took ${Math.round(results.durationS)} s`,
    `- Load average (1 min) at start ${m.loadAverageStart}, at end ${m.loadAverageEnd ?? 'n/a'}`,
    ...(results.note ? [`- Note: ${results.note}`] : []),
    '',
    '| Section | Figure | Value | Goal | | Detail |',
    '| --- | --- | ---: | --- | --- | --- |',
    ...results.figures.map(
      (f) =>
        `| ${f.section} | ${f.label} | ${formatValue(f.value, f.unit)} | ${formatGoal(f)} | ${status(f)} | ${(f.note ?? '').replaceAll('|', '\\|')} |`,
    ),
    '',
  ];
  return lines.join('\n');
}
