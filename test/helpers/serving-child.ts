/**
 * A server in a child process (`npm start`, `wrangler dev`) for a test file: started in its own
 * process group on a free port, polled until GET `readyPath` answers 200, stopped with its whole
 * group (npx, wrangler, workerd) in afterAll.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface ServingChild {
  base: string;
  child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM to its process group; safe to call twice. */
  stop(): void;
}

/**
 * Spawns `command args` (`args(port)` gets the free port) and waits until `readyPath` answers 200.
 * Throws with the child's output when it exits first or is not serving within `timeoutMs`.
 */
export async function startServingChild(opts: {
  what: string;
  command: string;
  args: (port: number) => string[];
  env: NodeJS.ProcessEnv;
  readyPath?: string;
  timeoutMs: number;
  pollMs?: number;
}): Promise<ServingChild> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let output = "";
  const child = spawn(opts.command, opts.args(port), {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: opts.env,
  });
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const served: ServingChild = {
    base,
    child,
    output: () => output,
    stop() {
      if (!child.pid || child.exitCode !== null) return;
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // already gone
      }
    },
  };
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${opts.what} exited early:\n${output}`);
    try {
      if ((await fetch(`${base}${opts.readyPath ?? "/v1/models"}`)).ok) return served;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      served.stop();
      throw new Error(`${opts.what} did not serve within ${opts.timeoutMs / 1000} s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
  }
}
