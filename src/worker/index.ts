/**
 * The Worker entry point. Routes are added by the API work; today it answers health checks and
 * gives every unknown path an OpenAI-style error body.
 */
import { Hono } from "hono";

const app = new Hono();

app.get("/healthz", (c) => c.json({ ok: true }));

app.notFound((c) =>
  c.json(
    {
      error: {
        message: `no route for ${c.req.method} ${new URL(c.req.url).pathname}`,
        type: "invalid_request_error",
        param: null,
        code: "not_found",
      },
    },
    404,
  ),
);

export default app;
