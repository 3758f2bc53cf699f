/**
 * Structured Optimal Brain Surgeon selection (Hassibi & Stork; structured as in ZipLM / SlimGPT):
 * which blocks of input columns of a linear layer to remove so that the output error *after* the
 * remaining columns are optimally re-fit is smallest.
 *
 * With input Gram G = XᵀX and C = G⁻¹, removing column block R and re-fitting the rest costs
 *   ΔL(R) = tr(W_R (C_RR)⁻¹ W_Rᵀ)
 * and the optimal update is W ← W − W_R (C_RR)⁻¹ C_R,:  and  C ← C − C_:,R (C_RR)⁻¹ C_R,: .
 * Removing greedily one block at a time accounts for correlations between channels: a channel whose
 * contribution the others can reproduce is cheap to remove even if its output energy is large.
 */
import { cholesky, choleskySolve, invertSpd, meanDiagonal } from "./linalg.ts";

/**
 * Greedily removes `removeCount` of `blocks` (each a list of column indices of W [N, K]); returns
 * the indices (into `blocks`) of the removed ones, in removal order. `dampening` is relative to
 * mean(diag G) and keeps G invertible.
 */
export function greedyObsRemoval(
  weights: Float32Array,
  N: number,
  K: number,
  gram: Float64Array,
  blocks: readonly (readonly number[])[],
  removeCount: number,
  dampening = 0.01,
): number[] {
  if (removeCount < 0 || removeCount > blocks.length) throw new Error("obs: bad number of blocks to remove");
  const damped = Float64Array.from(gram);
  const lambda = dampening * meanDiagonal(gram, K);
  for (let k = 0; k < K; k++) damped[k * K + k]! += lambda > 0 ? lambda : 1;
  let c = invertSpd(damped, K);
  // Column-major copy: column k is row k, so updates touch contiguous memory.
  const wt = new Float64Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = weights[n * K + k]!;

  const removed: number[] = [];
  const alive = new Set(blocks.keys());
  while (removed.length < removeCount) {
    let best = -1;
    let bestCost = Number.POSITIVE_INFINITY;
    for (const b of alive) {
      const cost = blockCost(wt, N, c, K, blocks[b]!);
      if (cost < bestCost) {
        bestCost = cost;
        best = b;
      }
    }
    const r = blocks[best]!;
    const m = r.length;
    // M = C_RR; T = M⁻¹ C_R,: (m × K).
    const mrr = new Float64Array(m * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) mrr[i * m + j] = c[r[i]! * K + r[j]!]!;
    const cr = new Float64Array(m * K);
    for (let i = 0; i < m; i++) cr.set(c.subarray(r[i]! * K, (r[i]! + 1) * K), i * K);
    const t = choleskySolve(cholesky(mrr, m), m, cr, K);
    // W ← W − W_R T  (column j of W gets −Σ_i W[:, r_i] T[i, j]).
    for (let j = 0; j < K; j++) {
      for (let i = 0; i < m; i++) {
        const f = t[i * K + j]!;
        if (f === 0) continue;
        const src = r[i]! * N;
        const dst = j * N;
        for (let n = 0; n < N; n++) wt[dst + n]! -= wt[src + n]! * f;
      }
    }
    // The removed columns are now exactly 0 (T[i, r_j] = δ_ij); C ← C − C_:,R T.
    const next = Float64Array.from(c);
    for (let a = 0; a < K; a++) {
      for (let i = 0; i < m; i++) {
        const f = c[a * K + r[i]!]!;
        if (f === 0) continue;
        for (let j = 0; j < K; j++) next[a * K + j]! -= f * t[i * K + j]!;
      }
    }
    c = next;
    // Keep the removed coordinates inert: unit diagonal, no coupling (their weights are 0 anyway).
    for (const k of r) {
      for (let j = 0; j < K; j++) {
        c[k * K + j] = 0;
        c[j * K + k] = 0;
      }
      c[k * K + k] = 1;
    }
    alive.delete(best);
    removed.push(best);
  }
  return removed;
}

/** tr(W_R (C_RR)⁻¹ W_Rᵀ) for column block R. */
function blockCost(wt: Float64Array, N: number, c: Float64Array, K: number, r: readonly number[]): number {
  const m = r.length;
  if (m === 1) {
    const k = r[0]!;
    let s = 0;
    for (let n = 0; n < N; n++) s += wt[k * N + n]! * wt[k * N + n]!;
    return s / c[k * K + k]!;
  }
  const mrr = new Float64Array(m * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) mrr[i * m + j] = c[r[i]! * K + r[j]!]!;
  // W_R as [m, N] rows; solve M Y = W_Rᵀ, cost = Σ W_R ∘ Y.
  const wr = new Float64Array(m * N);
  for (let i = 0; i < m; i++) wr.set(wt.subarray(r[i]! * N, (r[i]! + 1) * N), i * N);
  const y = choleskySolve(cholesky(mrr, m), m, wr, N);
  let s = 0;
  for (let i = 0; i < wr.length; i++) s += wr[i]! * y[i]!;
  return s;
}
