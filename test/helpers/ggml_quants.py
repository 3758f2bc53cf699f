"""Quantize and dequantize with llama.cpp's own ggml (libggml-base from node-llama-cpp) via ctypes.

usage: python3 ggml_quants.py <libggml-base.so> quantize <type> <n> <in.f32> <out-blocks> <nbytes> <out.f32>
         quantize_row_<type>_ref of n float32 values, then dequantize_row_<type> of those blocks
       python3 ggml_quants.py <libggml-base.so> dequantize <type> <n> <in-blocks> <out.f32>
         dequantize_row_<type> of blocks read from a file
Standard library only; <type> as ggml spells it (q4_0, q4_K).
"""
import ctypes
import sys

lib_path, mode, qtype, n = sys.argv[1:5]
n = int(n)
lib = ctypes.CDLL(lib_path)
y = (ctypes.c_float * n)()
if mode == "quantize":
    src, out_blocks, nbytes, out_f32 = sys.argv[5:9]
    x = (ctypes.c_float * n).from_buffer_copy(open(src, "rb").read())
    blocks = ctypes.create_string_buffer(n * 4)  # larger than any quantized row
    getattr(lib, f"quantize_row_{qtype}_ref")(x, blocks, ctypes.c_int64(n))
    open(out_blocks, "wb").write(blocks.raw[: int(nbytes)])
else:
    src, out_f32 = sys.argv[5:7]
    blocks = ctypes.create_string_buffer(open(src, "rb").read())
getattr(lib, f"dequantize_row_{qtype}")(blocks, y, ctypes.c_int64(n))
open(out_f32, "wb").write(bytes(y))
