// A small taskapi client written the way a person would write it with openapi-fetch, over the
// types openapi-typescript generates from the served OpenAPI document (build/schema.d.ts).
// It calls every operation of the document. It is never run: `tsc --noEmit --strict` checks
// that natural requests type-check (optional fields optional, booleans as booleans, no
// server-set field required) and that the answers and error codes have the documented types.

import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "../build/schema";

type Task = components["schemas"]["TaskPublic"];
type ErrorCode = components["schemas"]["ErrorBody"]["code"];

export function connect(baseUrl: string) {
  let accessToken: string | undefined;
  const auth: Middleware = {
    onRequest({ request }) {
      if (accessToken && !request.headers.has("Authorization")) {
        request.headers.set("Authorization", `Bearer ${accessToken}`);
      }
      return request;
    },
  };
  const api = createClient<paths>({ baseUrl });
  api.use(auth);
  return {
    api,
    setToken(token: string | undefined) {
      accessToken = token;
    },
  };
}

function fail(what: string, error: { error: string; code: ErrorCode }): never {
  throw new Error(`${what}: ${error.code}: ${error.error}`);
}

// --- accounts and tokens (body mode: a mobile app or a script) --------------------------------

export async function signUpAndLogIn(baseUrl: string, email: string, password: string) {
  const { api, setToken } = connect(baseUrl);

  // name is optional: leave it out.
  const registered = await api.POST("/api/v1/auth/register", { body: { email, password } });
  if (registered.error && registered.error.code !== "email_taken") {
    fail("register", registered.error);
  }

  const { data, error } = await api.POST("/api/v1/auth/login", { body: { email, password } });
  if (error) {
    if (error.code === "invalid_credentials") throw new Error("wrong email or password");
    if (error.code === "rate_limited") throw new Error("too many attempts; wait a little");
    fail("login", error);
  }
  setToken(data.access_token);
  const me: string = data.user.email;
  const refreshToken: string | undefined = data.refresh_token;

  // Refresh with the refresh token as Bearer, or in the body.
  if (refreshToken) {
    const rotated = await api.POST("/api/v1/auth/refresh", {
      headers: { Authorization: `Bearer ${refreshToken}` },
    });
    if (rotated.data) setToken(rotated.data.access_token);
    const next = rotated.data?.refresh_token;
    if (next) {
      const again = await api.POST("/api/v1/auth/refresh", { body: { refresh_token: next } });
      if (again.error?.code === "token_revoked") throw new Error("the session has ended");
      if (again.data) setToken(again.data.access_token);
    }
  }
  return { api, setToken, me };
}

export async function account(api: ReturnType<typeof connect>["api"], password: string) {
  const me = await api.GET("/api/v1/auth/me");
  if (me.error) fail("me", me.error);
  const created: string = me.data.created_at;

  const renamed = await api.PATCH("/api/v1/auth/me", { body: { name: "Ada Lovelace" } });
  if (renamed.data) console.log(`now ${renamed.data.name}, since ${created}`);

  const changed = await api.POST("/api/v1/auth/password", {
    body: { current_password: password, new_password: "a new and longer passphrase" },
  });
  if (changed.error?.code === "invalid_credentials") throw new Error("wrong current password");

  const sessions = await api.GET("/api/v1/auth/sessions", { params: { query: { limit: 20 } } });
  for (const session of sessions.data?.items ?? []) {
    if (!session.current) {
      await api.DELETE("/api/v1/auth/sessions/{session_id}", {
        params: { path: { session_id: session.id } },
      });
    }
  }
  const more = sessions.data?.next_cursor;
  if (more) await api.GET("/api/v1/auth/sessions", { params: { query: { cursor: more } } });

  await api.POST("/api/v1/auth/logout-all");
  await api.POST("/api/v1/auth/logout");
  const deleted = await api.DELETE("/api/v1/auth/me", { body: { password } });
  if (deleted.error) fail("delete account", deleted.error);
}

// --- account recovery and email (links arrive by email; the page posts their token) ---------

export async function recovery(baseUrl: string, email: string, token: string) {
  const { api } = connect(baseUrl);
  const asked = await api.POST("/api/v1/auth/password-reset", { body: { email } });
  if (asked.data) console.log(asked.data.message);

  const reset = await api.POST("/api/v1/auth/password-reset/confirm", {
    body: { token, new_password: "a long and fresh passphrase" },
  });
  if (reset.error?.code === "invalid_token") return "ask for a new link";

  const verified = await api.POST("/api/v1/auth/verify-email", { body: { token } });
  if (verified.error?.code === "email_taken") return "that address is taken now";
  return "done";
}

export async function email(api: ReturnType<typeof connect>["api"], password: string) {
  const resent = await api.POST("/api/v1/auth/verify-email/resend");
  if (resent.data?.status === "already_verified") console.log("nothing to verify");

  const change = await api.POST("/api/v1/auth/email", {
    body: { new_email: "ada@example.org", password },
  });
  if (change.error?.code === "invalid_credentials") throw new Error("wrong password");
}

// --- cookie mode (a browser SPA) ---------------------------------------------------------------

export async function browserSession(baseUrl: string, email: string, password: string) {
  const { api, setToken } = connect(baseUrl);
  const withCookies = { credentials: "include" as const };

  const login = await api.POST("/api/v1/auth/login", {
    body: { email, password, refresh_cookie: true },
    ...withCookies,
  });
  if (login.error) fail("login", login.error);
  setToken(login.data.access_token);
  let csrf = login.data.csrf_token;

  // After a reload: only the cookie is left; ask for the session's CSRF value.
  if (!csrf) {
    const restored = await api.GET("/api/v1/auth/csrf", withCookies);
    if (restored.error) {
      if (restored.error.code === "token_expired") return undefined; // log in again
      fail("csrf", restored.error);
    }
    csrf = restored.data.csrf_token;
  }

  const refreshed = await api.POST("/api/v1/auth/refresh", {
    params: { header: { "X-CSRF-TOKEN": csrf } },
    ...withCookies,
  });
  if (refreshed.error?.code === "csrf_failed") throw new Error("stale CSRF value");
  if (refreshed.data) setToken(refreshed.data.access_token);

  await api.POST("/api/v1/auth/logout", {
    params: { header: { "X-CSRF-TOKEN": csrf } },
    ...withCookies,
  });
  return csrf;
}

// --- tasks -------------------------------------------------------------------------------------

export async function tasks(api: ReturnType<typeof connect>["api"]): Promise<Task[]> {
  // Only the title is required; a retry-safe create with an Idempotency-Key.
  const created = await api.POST("/api/v1/tasks", {
    body: { title: "Water the plants" },
    params: { header: { "Idempotency-Key": crypto.randomUUID() } },
  });
  if (created.error) {
    if (created.error.code === "quota_exceeded") throw new Error("too many tasks");
    if (created.error.code === "idempotency_conflict") throw new Error("key reused");
    fail("create", created.error);
  }
  const task = created.data;
  const location = created.response.headers.get("Location");
  const replayed = created.response.headers.get("Idempotent-Replayed") === "true";
  console.log(location, replayed);

  await api.POST("/api/v1/tasks", {
    body: {
      title: "Call the plumber",
      notes: "Before Friday",
      priority: "high",
      tags: ["home"],
      due_at: "2030-05-01T09:00:00Z",
    },
  });

  // Patch only what changes.
  const done = await api.PATCH("/api/v1/tasks/{task_id}", {
    params: { path: { task_id: task.id } },
    body: { completed: true },
  });
  if (done.error?.code === "not_found") return [];

  // null clears the due date, and only that.
  await api.PATCH("/api/v1/tasks/{task_id}", {
    params: { path: { task_id: task.id }, header: { "If-Match": `"${task.version}"` } },
    body: { due_at: null },
  });

  // PUT what was read, changed: server-set fields may be sent back.
  const replaced = await api.PUT("/api/v1/tasks/{task_id}", {
    params: { path: { task_id: task.id }, header: { "If-Match": `"${task.version}"` } },
    body: { ...task, title: "Water the fern" },
  });
  if (replaced.error?.code === "precondition_failed") console.log("changed elsewhere");

  // A conditional GET: 304 leaves data undefined.
  const fetched = await api.GET("/api/v1/tasks/{task_id}", {
    params: {
      path: { task_id: task.id },
      header: { "If-None-Match": created.response.headers.get("ETag") ?? "" },
    },
  });
  const unchanged = fetched.response.status === 304;
  console.log(unchanged, fetched.data?.title);

  // Open tasks only: completed is a boolean.
  const open: Task[] = [];
  let cursor: string | undefined;
  do {
    const page = await api.GET("/api/v1/tasks", {
      params: { query: { completed: false, sort: "-due_at", limit: 100, cursor } },
    });
    if (page.error) fail("list", page.error);
    open.push(...page.data.items);
    cursor = page.data.next_cursor ?? undefined;
  } while (cursor);

  await api.GET("/api/v1/tasks", {
    params: { query: { q: "plants", tag: "home", priority: "high", due_before: "2031-01-01T00:00:00Z" } },
  });

  await api.DELETE("/api/v1/tasks/{task_id}", { params: { path: { task_id: task.id } } });
  const cleared = await api.DELETE("/api/v1/tasks", { params: { query: { completed: true } } });
  console.log(`cleared ${cleared.data?.deleted ?? 0}`);
  return open;
}

// --- lists, manual order, subtasks and recurring tasks ------------------------------------------

export async function organise(api: ReturnType<typeof connect>["api"]) {
  const lists = await api.GET("/api/v1/lists", { params: { query: { limit: 100 } } });
  if (lists.error) fail("lists", lists.error);
  const inbox = lists.data.items.find((list) => list.inbox);

  // Only the title is required; color is optional.
  const made = await api.POST("/api/v1/lists", {
    body: { title: "Groceries" },
    params: { header: { "Idempotency-Key": crypto.randomUUID() } },
  });
  if (made.error) {
    if (made.error.code === "quota_exceeded") throw new Error("too many lists");
    fail("create list", made.error);
  }
  const groceries = made.data;
  await api.PATCH("/api/v1/lists/{list_id}", {
    params: { path: { list_id: groceries.id } },
    body: { color: "#3a7bd5" },
  });
  await api.PUT("/api/v1/lists/{list_id}", {
    params: { path: { list_id: groceries.id }, header: { "If-Match": `"${groceries.version}"` } },
    body: { ...groceries, title: "Food" },
  });
  await api.GET("/api/v1/lists/{list_id}", { params: { path: { list_id: groceries.id } } });
  // First in the user's order.
  await api.POST("/api/v1/lists/{list_id}/move", {
    params: { path: { list_id: groceries.id } },
    body: { after: null },
  });

  // A task in the list, a subtask under it, and a weekly task that keeps 09:00 in Berlin.
  const milk = await api.POST("/api/v1/tasks", { body: { title: "Milk", list_id: groceries.id } });
  if (milk.error) fail("create", milk.error);
  await api.POST("/api/v1/tasks", { body: { title: "Oat milk", parent_id: milk.data.id } });
  const weekly = await api.POST("/api/v1/tasks", {
    body: {
      title: "Market",
      list_id: groceries.id,
      due_at: "2030-03-25T08:00:00Z",
      recurrence: "FREQ=WEEKLY;BYDAY=MO",
      timezone: "Europe/Berlin",
    },
  });
  if (weekly.error) fail("create", weekly.error);
  const completed = await api.PATCH("/api/v1/tasks/{task_id}", {
    params: { path: { task_id: weekly.data.id } },
    body: { completed: true },
  });
  const next: string | null | undefined = completed.data?.next_occurrence_id;

  // Drag "Market" right after "Milk"; then into the inbox (first there).
  await api.POST("/api/v1/tasks/{task_id}/move", {
    params: { path: { task_id: weekly.data.id } },
    body: { after: milk.data.id },
  });
  if (inbox) {
    await api.POST("/api/v1/tasks/{task_id}/move", {
      params: { path: { task_id: weekly.data.id } },
      body: { list_id: inbox.id, after: null },
    });
  }

  // The list's tasks in the user's order (the default inside a list), then the subtasks.
  const page = await api.GET("/api/v1/lists/{list_id}/tasks", {
    params: { path: { list_id: groceries.id }, query: { completed: false } },
  });
  const subtasks = await api.GET("/api/v1/tasks", {
    params: { query: { parent_id: milk.data.id, sort: "position" } },
  });

  const removed = await api.DELETE("/api/v1/lists/{list_id}", {
    params: { path: { list_id: groceries.id } },
  });
  if (removed.error?.code === "inbox_not_deletable") console.log("the inbox stays");
  return { next, tasks: page.data?.items.length, subtasks: subtasks.data?.items.length };
}

// --- personal access tokens (a script's own credential) ----------------------------------------

export async function scriptToken(api: ReturnType<typeof connect>["api"], baseUrl: string) {
  // Made with a session; expires_in_days is optional (never expires when left out).
  const made = await api.POST("/api/v1/auth/tokens", {
    body: { name: "nightly backup", scopes: ["tasks:read", "lists:read"] },
  });
  if (made.error) {
    if (made.error.code === "quota_exceeded") throw new Error("too many tokens");
    fail("token", made.error);
  }
  const secret: string = made.data.token; // shown this once
  const script = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${secret}` } });
  const page = await script.GET("/api/v1/tasks", { params: { query: { limit: 100 } } });
  const denied = await script.POST("/api/v1/tasks", { body: { title: "not allowed" } });
  if (denied.error?.code === "insufficient_scope") console.log("read-only token");

  const all = await api.GET("/api/v1/auth/tokens");
  const lastUsed = all.data?.items.find((t) => t.id === made.data.id)?.last_used_at;
  await api.DELETE("/api/v1/auth/tokens/{token_id}", {
    params: { path: { token_id: made.data.id } },
  });
  return { tasks: page.data?.items.length, lastUsed };
}

// --- delta sync --------------------------------------------------------------------------------

export async function sync(
  api: ReturnType<typeof connect>["api"],
  store: Map<string, Task>,
  since?: string,
): Promise<string | undefined> {
  let token = since;
  for (;;) {
    const { data, error } = await api.GET("/api/v1/tasks/changes", {
      params: { query: token ? { since: token, limit: 500 } : {} },
    });
    if (error) {
      if (error.code === "sync_token_expired") {
        store.clear();
        return sync(api, store);
      }
      fail("changes", error);
    }
    for (const change of data.changes) {
      if (change.type !== "task") continue; // lists: see organise()
      if (change.deleted || !change.task) store.delete(change.id);
      else store.set(change.id, change.task);
    }
    token = data.next;
    if (!data.has_more) return token;
  }
}

// --- health and documentation ------------------------------------------------------------------

export async function probes(baseUrl: string) {
  const { api } = connect(baseUrl);
  const health = await api.GET("/api/health");
  const ready = await api.GET("/api/ready");
  // 503 answers with the readiness body; other errors with the error body.
  const failed = ready.error && "checks" in ready.error ? ready.error.checks : undefined;
  const database = ready.data?.checks.database ?? failed?.database;
  const document = await api.GET("/api/v1/openapi.json");
  const page = await api.GET("/api/docs", { parseAs: "text" });
  const limit = health.response.headers.get("RateLimit-Remaining");
  return {
    alive: health.data?.status === "ok",
    database,
    openapi: document.data?.openapi,
    page: page.data?.length,
    limit,
  };
}
