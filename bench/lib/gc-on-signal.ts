/**
 * A preload for the reloader in the growth measurement only (`node --expose-gc --import <GC_ON_SIGNAL>`): on
 * SIGUSR2, two full garbage collections, then one line on stderr with process.memoryUsage(), so that memory is
 * compared after a forced settle rather than wherever the collector happened to be. Plain JavaScript in a
 * data: URL: a .ts preload would make Node load its TypeScript stripper into the measured process.
 */
const SOURCE = `
process.on('SIGUSR2', () => {
  globalThis.gc();
  globalThis.gc();
  process.stderr.write(JSON.stringify({ benchMemory: process.memoryUsage() }) + '\\n');
});
`;

export const GC_ON_SIGNAL_NODE_ARGS = [
  '--expose-gc',
  '--import',
  `data:text/javascript,${encodeURIComponent(SOURCE)}`,
];
