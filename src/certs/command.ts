// Placeholder until the certs command lands.
export async function run(_argv: string[]): Promise<number> {
  process.stderr.write('error: the certs command is not built yet\n');
  return 1;
}
