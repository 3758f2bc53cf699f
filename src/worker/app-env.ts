/** The Hono environment every route sees: the Worker's bindings and the per-isolate services. */
import type { Env } from "./env.ts";
import type { Services } from "./services.ts";

export interface AppEnv {
  Bindings: Env;
  Variables: { services: Services };
}
