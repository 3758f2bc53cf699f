/**
 * The Server-Timing response header (https://www.w3.org/TR/server-timing/#the-server-timing-header-field):
 * `name;dur=12.3;desc="text", other;dur=4`. Returns each metric's name and duration in milliseconds
 * (null when absent or not a number); unknown parameters are ignored and a malformed header gives
 * whatever metrics parse, never an exception.
 */
export interface TimingMetric {
  name: string;
  durMs: number | null;
  desc: string | null;
}

export function parseServerTiming(header: string | null): TimingMetric[] {
  if (!header) return [];
  const metrics: TimingMetric[] = [];
  for (const part of header.split(",")) {
    const [rawName, ...params] = part.split(";").map((s) => s.trim());
    if (!rawName || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(rawName)) continue;
    let durMs: number | null = null;
    let desc: string | null = null;
    for (const p of params) {
      const eq = p.indexOf("=");
      if (eq < 0) continue;
      const key = p.slice(0, eq).trim().toLowerCase();
      const value = p
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, "$1");
      if (key === "dur") {
        const n = Number(value);
        durMs = value !== "" && Number.isFinite(n) ? n : null;
      } else if (key === "desc") desc = value;
    }
    metrics.push({ name: rawName, durMs, desc });
  }
  return metrics;
}
