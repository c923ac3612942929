// Placeholder until the reloader command lands.
export async function run(_argv: string[]): Promise<number> {
  process.stderr.write('error: the reloader command is not built yet\n');
  return 1;
}
