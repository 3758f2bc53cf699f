/** node-llama-cpp (CPU, prebuilt binaries only) greedy decoding, for checking files against llama.cpp. */
import {
  getLlama,
  type Llama,
  type LlamaContext,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";

export class LlamaCpp {
  private readonly open: (LlamaModel | LlamaContext)[] = [];
  private constructor(readonly llama: Llama) {}

  static async start(): Promise<LlamaCpp> {
    return new LlamaCpp(await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error }));
  }

  /** Loads `path`, feeds bos + the prompt's tokens and returns `count` greedy tokens. */
  async greedy(path: string, prompt: string, count: number): Promise<{ input: number[]; output: number[] }> {
    const model = await this.llama.loadModel({ modelPath: path });
    this.open.push(model);
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    this.open.push(context);
    const input = [model.tokens.bos!, ...model.tokenize(prompt, false)] as Token[];
    const output: number[] = [];
    for await (const t of context.getSequence().evaluate(input, { temperature: 0 })) {
      output.push(t);
      if (output.length >= count) break;
    }
    return { input, output };
  }

  async dispose(): Promise<void> {
    for (const x of this.open.reverse()) await x.dispose();
    this.open.length = 0;
  }
}
