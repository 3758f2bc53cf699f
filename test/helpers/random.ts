/** The tests' one deterministic PRNG (mulberry32), shared with the benches. */
export { mulberry32 } from "../../src/bench/data.ts";
