// Placeholder until the inject command lands.
export async function run(_argv: string[]): Promise<number> {
  process.stderr.write('error: the inject command is not built yet\n');
  return 1;
}
