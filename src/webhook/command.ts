// Placeholder until the webhook command lands.
export async function run(_argv: string[]): Promise<number> {
  process.stderr.write('error: the webhook command is not built yet\n');
  return 1;
}
