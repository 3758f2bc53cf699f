/**
 * Small dense linear algebra in float64 for the compression pipeline (GPTQ, healing, error metrics).
 * Matrices are row-major Float64Arrays with an explicit size; sizes here are layer widths (≤ a few
 * thousand), so plain O(n³) loops are enough and keep the numerics obvious.
 */

/** A symmetric matrix turned out not to be positive definite (Cholesky hit a pivot ≤ 0). */
export class NotPositiveDefiniteError extends Error {
  override readonly name = "NotPositiveDefiniteError";
  constructor(
    readonly size: number,
    readonly pivotIndex: number,
    readonly pivot: number,
  ) {
    super(
      `matrix ${size}x${size} is not symmetric positive definite: pivot ${pivotIndex} is ${pivot} ` +
        "(add ridge/damping, or drop dead channels)",
    );
  }
}

function checkSquare(a: Float64Array, n: number, what: string): void {
  if (!Number.isInteger(n) || n <= 0 || a.length !== n * n) {
    throw new Error(`${what}: expected a ${n}x${n} matrix, got ${a.length} values`);
  }
}

/** Σ_{k<len} a[ao+k]·b[bo+k] with four independent sums (the serial chain is the bottleneck). */
function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 4 <= len; k += 4) {
    s0 += a[ao + k]! * b[bo + k]!;
    s1 += a[ao + k + 1]! * b[bo + k + 1]!;
    s2 += a[ao + k + 2]! * b[bo + k + 2]!;
    s3 += a[ao + k + 3]! * b[bo + k + 3]!;
  }
  for (; k < len; k++) s0 += a[ao + k]! * b[bo + k]!;
  return s0 + s1 + (s2 + s3);
}

/**
 * Lower Cholesky factor L of a symmetric positive definite A (A = L Lᵀ); a new array, upper triangle 0.
 * Only the lower triangle of A is read. Throws NotPositiveDefiniteError on a non-positive pivot.
 */
export function cholesky(a: Float64Array, n: number): Float64Array {
  checkSquare(a, n, "cholesky");
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const lj = j * n;
    const d = a[j * n + j]! - dot(l, lj, l, lj, j);
    // NaN must fail too, hence the negated comparison.
    if (!(d > 0)) throw new NotPositiveDefiniteError(n, j, d);
    const djj = Math.sqrt(d);
    l[lj + j] = djj;
    for (let i = j + 1; i < n; i++) {
      const li = i * n;
      l[li + j] = (a[li + j]! - dot(l, li, l, lj, j)) / djj;
    }
  }
  return l;
}

/**
 * x[to..to+m) -= f · x[from..from+m), unrolled by 4 (each entry gets the same single operation as a
 * plain loop: results are identical; ~1.5x faster on a 1536x768 solve).
 */
function subtractScaledRow(x: Float64Array, to: number, from: number, f: number, m: number): void {
  let c = 0;
  for (; c + 4 <= m; c += 4) {
    x[to + c]! -= f * x[from + c]!;
    x[to + c + 1]! -= f * x[from + c + 1]!;
    x[to + c + 2]! -= f * x[from + c + 2]!;
    x[to + c + 3]! -= f * x[from + c + 3]!;
  }
  for (; c < m; c++) x[to + c]! -= f * x[from + c]!;
}

/**
 * Solves A X = B given A's lower Cholesky factor L; B is row-major [n, m] (m right-hand sides).
 * Returns a new [n, m] array.
 */
export function choleskySolve(l: Float64Array, n: number, b: Float64Array, m = 1): Float64Array {
  checkSquare(l, n, "choleskySolve");
  if (b.length !== n * m)
    throw new Error(`choleskySolve: right-hand side has ${b.length} values, expected ${n}x${m}`);
  const x = Float64Array.from(b);
  // Forward: L Y = B.
  for (let i = 0; i < n; i++) {
    const li = i * n;
    for (let k = 0; k < i; k++) {
      const f = l[li + k]!;
      if (f !== 0) subtractScaledRow(x, i * m, k * m, f, m);
    }
    const d = l[li + i]!;
    for (let c = 0; c < m; c++) x[i * m + c] = x[i * m + c]! / d;
  }
  // Backward: Lᵀ X = Y.
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const f = l[k * n + i]!;
      if (f !== 0) subtractScaledRow(x, i * m, k * m, f, m);
    }
    const d = l[i * n + i]!;
    for (let c = 0; c < m; c++) x[i * m + c] = x[i * m + c]! / d;
  }
  return x;
}

/** Solves A X = B for symmetric positive definite A ([n, n]) and B ([n, m]). */
export function solveSpd(a: Float64Array, n: number, b: Float64Array, m = 1): Float64Array {
  return choleskySolve(cholesky(a, n), n, b, m);
}

/** A⁻¹ of a symmetric positive definite A (symmetrized, so later Cholesky sees exact symmetry). */
export function invertSpd(a: Float64Array, n: number): Float64Array {
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  const inv = choleskySolve(cholesky(a, n), n, eye, n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (inv[i * n + j]! + inv[j * n + i]!);
      inv[i * n + j] = v;
      inv[j * n + i] = v;
    }
  }
  return inv;
}

/** Upper-triangular U with A = Uᵀ U (the transpose of the lower factor). */
export function choleskyUpper(a: Float64Array, n: number): Float64Array {
  const l = cholesky(a, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) u[j * n + i] = l[i * n + j]!;
  return u;
}

/**
 * Upper-triangular U with A⁻¹ = UᵀU, for symmetric positive definite A, in ~2n³/3 flops instead of
 * inverting A and factoring the inverse (~3n³). With J the reversal permutation and JAJ = L'L'ᵀ,
 * A⁻¹ = J L'⁻ᵀ L'⁻¹ J, so U = J L'⁻¹ J (J·lower·J is upper). Throws NotPositiveDefiniteError.
 */
export function inverseCholeskyUpper(a: Float64Array, n: number): Float64Array {
  checkSquare(a, n, "inverseCholeskyUpper");
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) r[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)]!;
  const l = cholesky(r, n);
  // Mᵀ with M = L⁻¹ (lower): column j of M by forward substitution, stored as row j of Mᵀ so
  // every inner product runs over contiguous memory.
  const mt = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const mj = j * n;
    mt[mj + j] = 1 / l[mj + j]!;
    for (let i = j + 1; i < n; i++) {
      const li = i * n;
      mt[mj + i] = -dot(l, li + j, mt, mj + j, i - j) / l[li + i]!;
    }
  }
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) u[(n - 1 - i) * n + (n - 1 - j)] = mt[j * n + i]!;
  return u;
}

/** C = A B with A [n, k] and B [k, m], row-major. */
export function matMul(a: Float64Array, b: Float64Array, n: number, k: number, m: number): Float64Array {
  if (a.length !== n * k || b.length !== k * m) throw new Error("matMul: size mismatch");
  const c = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < k; p++) {
      const f = a[i * k + p]!;
      if (f === 0) continue;
      const bp = p * m;
      const ci = i * m;
      for (let j = 0; j < m; j++) c[ci + j]! += f * b[bp + j]!;
    }
  }
  return c;
}

/** Mean of the diagonal of an [n, n] matrix. */
export function meanDiagonal(a: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[i * n + i]!;
  return s / n;
}

/**
 * Σ_r e_r G e_rᵀ over the rows e_r of E ([rows, n]) for a symmetric G ([n, n]): the squared
 * Frobenius norm ‖X Eᵀ‖² when G = XᵀX, i.e. a linear layer's output energy from its input Gram.
 */
export function quadraticFormSum(e: ArrayLike<number>, rows: number, g: Float64Array, n: number): number {
  checkSquare(g, n, "quadraticFormSum");
  if (e.length !== rows * n) throw new Error("quadraticFormSum: size mismatch");
  const tmp = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    tmp.fill(0);
    for (let i = 0; i < n; i++) {
      const ei = e[base + i]!;
      if (ei === 0) continue;
      const gi = i * n;
      for (let j = 0; j < n; j++) tmp[j]! += ei * g[gi + j]!;
    }
    for (let j = 0; j < n; j++) total += tmp[j]! * e[base + j]!;
  }
  return total;
}
