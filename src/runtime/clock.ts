/**
 * Time, as the code that serves requests may read it.
 *
 * Deployed Workers freeze `Date.now()` and `performance.now()` while JavaScript runs: they advance
 * only when the isolate goes back to its event loop for I/O (Cloudflare, "Performance and timers":
 * a Spectre mitigation). Locally (wrangler dev, Node) they run freely. So an interval of pure CPU
 * work (a prefill, a run of decode steps awaited only through promises) reads 0 ms in production,
 * and any interval reads at most the time up to its last I/O. Nothing that must hold in production
 * (a budget, a deadline) may therefore be read off a clock; clocks only *calibrate*, and only where
 * they demonstrably measure (see ClockTrust).
 *
 * Two clocks:
 * - `systemClock`: performance.now(), whatever the platform makes of it.
 * - `IoFrozenClock`: the production behaviour, reproducible anywhere. Its reading moves only after
 *   the event loop has turned (a macrotask ran: I/O, a timer) since the last reading; pure CPU work
 *   and promise chains read the same time throughout. `SHARDLM_FROZEN_CLOCK=1` makes the Worker use
 *   it. Timers count as turning the loop, as in workerd, where a timer callback runs at its time.
 */

export interface Clock {
  /** Milliseconds from an arbitrary origin; never decreases. */
  now(): number;
  /** "system" or "frozen-at-io" (for logs and GET /healthz). */
  readonly kind: string;
}

export const systemClock: Clock = {
  kind: "system",
  now: () => performance.now(),
};

/**
 * A clock that advances only when the event loop has turned since its last reading. Create one per
 * request (in workerd a timer belongs to the request that set it, so a per-isolate clock would stop
 * seeing turns once the request that armed it ended).
 */
export class IoFrozenClock implements Clock {
  readonly kind = "frozen-at-io";
  private reading = performance.now();
  private turned = false;
  private armed = false;

  now(): number {
    if (this.turned) {
      this.reading = Math.max(this.reading, performance.now());
      this.turned = false;
    }
    this.arm();
    return this.reading;
  }

  /** Schedules a macrotask that marks the loop as turned; it runs only once JS yields to I/O. */
  private arm(): void {
    if (this.armed) return;
    this.armed = true;
    setTimeout(() => {
      this.armed = false;
      this.turned = true;
    }, 0);
  }
}

/** The clock a request reads: frozen at I/O when `frozen` (SHARDLM_FROZEN_CLOCK), else the system's. */
export function requestClock(frozen: boolean): Clock {
  return frozen ? new IoFrozenClock() : systemClock;
}

/** Iterations of the probe's busy loop: ~3-10 ms of CPU on anything we run on, checked every 4096. */
const PROBE_ITERATIONS = 1 << 22;

/**
 * Whether a clock advances across pure CPU work, found by doing some: a busy loop (no I/O, no
 * awaits) that stops as soon as the clock moves. A free-running clock moves within microseconds
 * (the probe costs next to nothing); a clock frozen during CPU work never does, and the probe
 * spends its whole loop (a few ms, once per isolate).
 */
export function advancesDuringCpuWork(clock: Clock): boolean {
  const t0 = clock.now();
  let x = 0x9e3779b9;
  for (let i = 1; i <= PROBE_ITERATIONS; i++) {
    x ^= x << 13; // xorshift: real work between readings
    x ^= x >>> 17;
    x ^= x << 5;
    if ((i & 4095) === 0 && clock.now() > t0) return true;
  }
  probeSink = x; // keeps the loop's work observable
  return false;
}

let probeSink = 0;
/** The probe's last state (only so the loop cannot be optimised away). */
export const lastProbeState = () => probeSink;

/**
 * Predicted work above which an interval that reads 0 ms proves the clock frozen, ms. Well above
 * a clock's resolution (workerd's is 1 ms locally) times the worst prediction error the cost model
 * allows (its corrections are bounded to 10x).
 */
export const SUBSTANTIAL_WORK_MS = 20;

/**
 * Per-isolate verdict on whether intervals of CPU work can be measured with the request clocks.
 * Unknown until the first probe; once a clock is seen frozen across substantial work it stays
 * untrusted (the platform's timer semantics do not change within an isolate). An untrusted clock
 * still measures intervals that end right after I/O of our own (loading shards from R2), but not
 * prefill or decode.
 */
export class ClockTrust {
  private verdict: boolean | null = null;

  /** Whether CPU intervals can be measured; probes the clock the first time. */
  cpuMeasurable(clock: Clock): boolean {
    if (this.verdict === null) this.verdict = advancesDuringCpuWork(clock);
    return this.verdict;
  }

  /** Known verdict without probing: true, false (frozen seen), or null (not probed yet). */
  get known(): boolean | null {
    return this.verdict;
  }

  /**
   * Checks a measured interval of CPU work against its predicted duration: a reading of 0 ms (or
   * less) across `predictedMs >= SUBSTANTIAL_WORK_MS` of work means the clock froze, and from then
   * on nothing measured on it feeds the cost model. Returns whether this interval is usable.
   */
  check(elapsedMs: number, predictedMs: number): boolean {
    if (!Number.isFinite(elapsedMs) || elapsedMs <= 0) {
      if (predictedMs >= SUBSTANTIAL_WORK_MS) this.verdict = false;
      return false;
    }
    return this.verdict !== false;
  }
}
