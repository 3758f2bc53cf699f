/** IEEE half -> fp32 (and the block-size check shared by the quant families) through a 64K-entry table (ggml's GGML_FP16_TO_FP32, exact for every bit pattern). */
const table = buildTable();

function buildTable(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return t;
}

export function f16ToF32(h: number): number {
  return table[h & 0xffff]!;
}

/** The little-endian fp16 at byte `at` of `b`, as fp32. */
export function halfAt(b: Uint8Array, at: number): number {
  return table[b[at]! | (b[at + 1]! << 8)]!;
}

/** Module-load check that a block's byte count is the sum of its fields (ggml's static_assert). */
export function assertBlockBytes(name: string, bytes: number, fields: number): void {
  if (bytes !== fields) throw new Error(`block_${name}: ${bytes} bytes declared, fields take ${fields}`);
}
