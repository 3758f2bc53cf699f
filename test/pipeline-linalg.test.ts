/** Dense float64 linear algebra of the pipeline: Cholesky, solves, inverse, the non-SPD error. */
import { describe, expect, it } from "vitest";
import {
  cholesky,
  choleskyUpper,
  invertSpd,
  matMul,
  NotPositiveDefiniteError,
  quadraticFormSum,
  solveSpd,
} from "../src/compress/linalg.ts";
import { seededValues } from "./pipeline-fixtures.ts";

/** A random symmetric positive definite n×n matrix: BᵀB + n·I. */
function randomSpd(n: number, seed: number): Float64Array {
  const b = seededValues(n * n, seed);
  const bt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) bt[i * n + j] = b[j * n + i]!;
  const a = matMul(bt, b, n, n, n);
  for (let i = 0; i < n; i++) a[i * n + i]! += n;
  return a;
}

describe("linalg", () => {
  it("factors a known matrix", () => {
    // [[4, 12, -16], [12, 37, -43], [-16, -43, 98]] = L Lᵀ with L = [[2,0,0],[6,1,0],[-8,5,3]].
    const a = Float64Array.from([4, 12, -16, 12, 37, -43, -16, -43, 98]);
    expect([...cholesky(a, 3)]).toEqual([2, 0, 0, 6, 1, 0, -8, 5, 3]);
    expect([...choleskyUpper(a, 3)]).toEqual([2, 6, -8, 0, 1, 5, 0, 0, 3]);
  });

  it("solves a known system, with several right-hand sides", () => {
    const a = Float64Array.from([4, 1, 1, 3]);
    // A [1, 2]ᵀ = [6, 7]ᵀ and A [-1, 1]ᵀ = [-3, 2]ᵀ, as two columns of B.
    const x = solveSpd(a, 2, Float64Array.from([6, -3, 7, 2]), 2);
    expect(x[0]).toBeCloseTo(1, 12);
    expect(x[1]).toBeCloseTo(-1, 12);
    expect(x[2]).toBeCloseTo(2, 12);
    expect(x[3]).toBeCloseTo(1, 12);
  });

  it("solves and inverts random SPD systems to rounding error", () => {
    const n = 40;
    const a = randomSpd(n, 7);
    const xTrue = seededValues(n, 8);
    const b = matMul(a, xTrue, n, n, 1);
    const x = solveSpd(a, n, b);
    for (let i = 0; i < n; i++) expect(Math.abs(x[i]! - xTrue[i]!)).toBeLessThan(1e-10);
    const eye = matMul(a, invertSpd(a, n), n, n, n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) expect(eye[i * n + j]!).toBeCloseTo(i === j ? 1 : 0, 10);
  });

  it("rejects matrices that are not positive definite, naming the pivot", () => {
    const indefinite = Float64Array.from([1, 2, 2, 1]);
    expect(() => cholesky(indefinite, 2)).toThrow(NotPositiveDefiniteError);
    expect(() => solveSpd(indefinite, 2, Float64Array.from([1, 1]))).toThrow(
      /not symmetric positive definite: pivot 1/,
    );
    const singular = Float64Array.from([1, 1, 1, 1]);
    expect(() => cholesky(singular, 2)).toThrow(NotPositiveDefiniteError);
    expect(() => cholesky(Float64Array.from([Number.NaN]), 1)).toThrow(NotPositiveDefiniteError);
    expect(() => cholesky(new Float64Array(3), 2)).toThrow(/expected a 2x2 matrix/);
  });

  it("quadraticFormSum is ‖X Eᵀ‖² for G = XᵀX", () => {
    const rows = 30;
    const k = 6;
    const n = 4;
    const x = seededValues(rows * k, 1);
    const e = seededValues(n * k, 2);
    const xt = new Float64Array(k * rows);
    for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) xt[c * rows + r] = x[r * k + c]!;
    const g = matMul(xt, x, k, rows, k);
    let direct = 0;
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < n; o++) {
        let s = 0;
        for (let c = 0; c < k; c++) s += x[r * k + c]! * e[o * k + c]!;
        direct += s * s;
      }
    }
    expect(quadraticFormSum(e, n, g, k)).toBeCloseTo(direct, 9);
  });
});
