// A small client of the taskapi HTTP contract in cookie mode (API.md, "Two ways to hold the
// refresh token"):
//
// - The access token lives in this object only (memory). Nothing readable by scripts is ever
//   written to localStorage or sessionStorage, so an injected script cannot lift a token that
//   outlives the page.
// - The refresh token lives in an HttpOnly cookie that the API sets, scoped to /api/v1/auth.
//   Requests that must carry it use `credentials: "include"`; task requests do not need it.
// - Every cookie-carrying call (refresh, logout) sends the session's csrf_token in
//   X-CSRF-TOKEN. That value belongs to the session and stays the same across refreshes, so
//   each tab can refresh after another did. After a reload, GET /auth/csrf hands it back.

/** An answer from the API that is not a success, in the contract's error shape. */
export class ApiError extends Error {
  constructor({ status, code, message, details = [], retryAfter = null, sessionEnded = false }) {
    super(message);
    this.status = status; // 0 when the API could not be reached at all
    this.code = code;
    this.details = details; // [{field, message}] for validation errors
    this.retryAfter = retryAfter; // seconds, from Retry-After (429)
    this.sessionEnded = sessionEnded; // the user has to log in again
  }
}

export class TaskApi {
  #accessToken = null;
  #csrfToken = null;
  #refreshing = null; // the refresh in flight, shared by every request of this tab

  constructor(baseUrl) {
    this.baseUrl = baseUrl;
  }

  get signedIn() {
    return this.#accessToken !== null;
  }

  // --- account and session --------------------------------------------------------------

  /** POST /auth/register; the caller logs in afterwards. */
  async register({ email, password, name }) {
    return ok(await this.#send("POST", "/auth/register", { body: { email, password, name } }));
  }

  /** POST /auth/login in cookie mode: the API sets the refresh cookie, we keep the rest. */
  async login({ email, password }) {
    const answer = ok(
      await this.#send("POST", "/auth/login", {
        body: { email, password, refresh_cookie: true },
        cookie: true, // without it the browser drops the cross-origin Set-Cookie
      }),
    );
    this.#accessToken = answer.access_token;
    this.#csrfToken = answer.csrf_token;
    return answer.user;
  }

  /**
   * Pick up the session of the refresh cookie after a reload or in a new tab: the cookie is
   * HttpOnly, so ask the API for its CSRF value, then refresh for an access token.
   * Returns the user, or null when there is no live session.
   */
  async restore() {
    const csrf = await this.#send("GET", "/auth/csrf", { cookie: true });
    if (csrf.status === 401) return null; // no cookie, or its session has ended
    this.#csrfToken = ok(csrf).csrf_token;
    try {
      await this.#refresh();
    } catch (error) {
      if (error.sessionEnded) return null;
      throw error;
    }
    return this.me();
  }

  /**
   * POST /auth/logout with the cookie and X-CSRF-TOKEN only: they name the session, so this
   * works even after the access token expired, without a refresh first. Local state is
   * forgotten whatever the answer.
   */
  async logout() {
    const csrf = this.#csrfToken ?? "";
    this.#forget();
    const answer = await this.#send("POST", "/auth/logout", {
      cookie: true,
      headers: { "X-CSRF-TOKEN": csrf },
    });
    if (answer.status !== 401) ok(answer); // 401: the session had already ended
  }

  /** GET /auth/me */
  async me() {
    return this.#authed("GET", "/auth/me");
  }

  // --- tasks -----------------------------------------------------------------------------

  /** One page of tasks: {items, next_cursor}. Keyset paging: pass next_cursor back as is. */
  async listTasks({ completed = null, cursor = null, limit = 10 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (completed !== null) query.set("completed", String(completed));
    if (cursor !== null) query.set("cursor", cursor);
    return this.#authed("GET", `/tasks?${query}`);
  }

  /** POST /tasks. The Idempotency-Key makes the retry after a silent refresh safe. */
  async createTask(fields) {
    const headers = {};
    if (globalThis.crypto?.randomUUID) headers["Idempotency-Key"] = crypto.randomUUID();
    return this.#authed("POST", "/tasks", { body: fields, headers });
  }

  /** PATCH only the given fields; If-Match turns a concurrent change into a 412. */
  async updateTask(task, fields) {
    const path = `/tasks/${encodeURIComponent(task.id)}`;
    return this.#authed("PATCH", path, { body: fields, headers: ifMatch(task) });
  }

  /** DELETE /tasks/<id> */
  async deleteTask(task) {
    const path = `/tasks/${encodeURIComponent(task.id)}`;
    return this.#authed("DELETE", path, { headers: ifMatch(task) });
  }

  // --- plumbing ----------------------------------------------------------------------------

  /** An authenticated request; on 401 token_expired, refresh once and retry once. */
  async #authed(method, path, options = {}) {
    if (this.#accessToken === null) throw sessionEnded("You are not logged in.");
    const sentWith = this.#accessToken;
    let answer = await this.#send(method, path, withBearer(options, sentWith));
    if (answer.status === 401 && answer.body?.code === "token_expired") {
      // Another request of this tab may have refreshed meanwhile: then just retry.
      if (this.#accessToken === sentWith) await this.#refresh();
      answer = await this.#send(method, path, withBearer(options, this.#accessToken));
    }
    if (answer.status === 401) {
      this.#forget(); // revoked (logged out elsewhere) or still invalid: start over
      throw toError(answer, { sessionEnded: true });
    }
    return ok(answer);
  }

  /** POST /auth/refresh with the cookie; one at a time per tab. */
  #refresh() {
    this.#refreshing ??= this.#rotate().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #rotate() {
    const answer = await this.#send("POST", "/auth/refresh", {
      cookie: true,
      headers: { "X-CSRF-TOKEN": this.#csrfToken ?? "" },
    });
    if (!answer.ok) {
      this.#forget();
      // 401: the session is over. 403 csrf_failed: our CSRF value is not this cookie's.
      throw toError(answer, { sessionEnded: answer.status === 401 || answer.status === 403 });
    }
    this.#accessToken = answer.body.access_token;
    this.#csrfToken = answer.body.csrf_token; // the same value again; kept in case it changes
  }

  #forget() {
    this.#accessToken = null;
    this.#csrfToken = null;
  }

  /** fetch, never throwing for HTTP errors: {ok, status, body, headers}. */
  async #send(method, path, { body, headers = {}, cookie = false } = {}) {
    const init = {
      method,
      headers: { ...headers },
      credentials: cookie ? "include" : "omit",
      cache: "no-store",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(`${this.baseUrl}/api/v1${path}`, init);
    } catch {
      // The browser hides why (down, offline, or a CORS refusal) from scripts on purpose.
      throw new ApiError({
        status: 0,
        code: "network_error",
        message:
          `Cannot reach the API at ${this.baseUrl}: it is down, or this page's origin ` +
          "is not on its CORS allowlist (TASKAPI_CORS_ORIGINS).",
      });
    }
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null; // not JSON: e.g. a proxy's HTML error page
    }
    return { ok: response.ok, status: response.status, body: parsed, headers: response.headers };
  }
}

/** The body of a successful answer, or throw its ApiError. */
function ok(answer) {
  if (!answer.ok) throw toError(answer);
  return answer.body;
}

function toError(answer, extra = {}) {
  const body = answer.body ?? {};
  const wait = Number.parseInt(answer.headers.get("Retry-After") ?? "", 10);
  return new ApiError({
    status: answer.status,
    code: body.code ?? "http_error",
    message: body.error ?? `The API answered ${answer.status}.`,
    details: Array.isArray(body.details) ? body.details : [],
    retryAfter: Number.isFinite(wait) ? wait : null,
    ...extra,
  });
}

function sessionEnded(message) {
  return new ApiError({ status: 401, code: "unauthorized", message, sessionEnded: true });
}

function withBearer(options, token) {
  return { ...options, headers: { ...options.headers, Authorization: `Bearer ${token}` } };
}

function ifMatch(task) {
  return { "If-Match": `"${task.version}"` };
}
