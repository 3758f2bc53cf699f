/** Byte counts as people read them, in decimal units (1 kB = 1000 B), for progress lines and tables. */
export function humanBytes(bytes: number): string {
  if (bytes < 1e3) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(2)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

/** Megabytes (1e6 B) with two decimals. */
export function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(2);
}
