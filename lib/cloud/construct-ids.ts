/** 'research-worker' -> 'ResearchWorker': construct ids and IAM statement ids from spec names. */
export function pascalCase(name: string): string {
  return name.replace(/(^|-)([a-z0-9])/g, (_, __, c: string) => c.toUpperCase());
}
