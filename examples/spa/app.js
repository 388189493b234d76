// The page: forms and the task list, over the client in api.js. User data is only ever put
// into the page with textContent, so a title like "<img onerror=...>" stays text.

import { ApiError, TaskApi } from "./api.js";
import { apiBaseUrl } from "./config.js";

const PAGE_SIZE = 10;
const api = new TaskApi(apiBaseUrl());
const $ = (id) => document.getElementById(id);

const list = $("task-list");
const tasks = new Map(); // id -> the task as the API last returned it
let nextCursor = null;
let listGeneration = 0; // a newer first-page load makes older answers stale

// --- views and messages ------------------------------------------------------------------

function setView(state) {
  document.body.dataset.state = state; // "loading", "signed-out" or "signed-in"
  $("status").hidden = state !== "loading";
  $("auth-view").hidden = state !== "signed-out";
  $("tasks-view").hidden = state !== "signed-in";
  $("session").hidden = state !== "signed-in";
}

async function showSignedIn(user) {
  $("who").textContent = user.name ? `${user.name} (${user.email})` : user.email;
  for (const id of ["login-password", "signup-password"]) $(id).value = "";
  setView("signed-in");
  await loadTasks({ append: false });
}

function showSignedOut() {
  list.replaceChildren();
  tasks.clear();
  $("who").textContent = "";
  setView("signed-out");
}

function clearError() {
  const box = $("error");
  box.hidden = true;
  box.replaceChildren();
  delete box.dataset.code;
  delete box.dataset.retryAfter;
}

/** Show an error as the contract gives it: message, field details, and the 429 wait. */
function showError(error) {
  const box = $("error");
  box.replaceChildren();
  const message = document.createElement("p");
  message.className = "message";
  if (error instanceof ApiError) {
    box.dataset.code = error.code;
    message.textContent = error.message;
    if (error.retryAfter !== null) {
      box.dataset.retryAfter = String(error.retryAfter);
      message.textContent += ` Try again in ${formatWait(error.retryAfter)}.`;
    }
  } else {
    box.dataset.code = "client_error";
    message.textContent = `Something went wrong: ${error.message}`;
    console.error(error);
  }
  box.append(message);
  if (error.details?.length) {
    const details = document.createElement("ul");
    for (const detail of error.details) {
      const item = document.createElement("li");
      item.dataset.field = detail.field ?? "";
      item.textContent = detail.field ? `${detail.field}: ${detail.message}` : detail.message;
      details.append(item);
    }
    box.append(details);
  }
  box.hidden = false;
  if (error.sessionEnded) showSignedOut();
}

function formatWait(seconds) {
  if (seconds < 90) return `${seconds} second${seconds === 1 ? "" : "s"}`;
  return `${Math.ceil(seconds / 60)} minutes`;
}

/** Run an event handler: clear the last error, show a new one, never leave a rejection. */
function handle(work) {
  return async (event) => {
    // A form is sent by fetch, not by the page; its buttons wait until the answer is in.
    const buttons = event.type === "submit" ? [...event.target.querySelectorAll("button")] : [];
    if (event.type === "submit") event.preventDefault();
    for (const button of buttons) button.disabled = true;
    clearError();
    try {
      await work(event);
    } catch (error) {
      showError(error);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  };
}

// --- the task list -----------------------------------------------------------------------

function currentFilter() {
  const value = $("filter").value; // "", "true" or "false"
  return value === "" ? null : value === "true";
}

/** The first page (append=false) or the next one, following the API's next_cursor. */
async function loadTasks({ append }) {
  const generation = append ? listGeneration : ++listGeneration;
  $("load-more").hidden = true;
  const page = await api.listTasks({
    completed: currentFilter(),
    cursor: append ? nextCursor : null,
    limit: PAGE_SIZE,
  });
  if (generation !== listGeneration) return; // the filter changed meanwhile
  if (!append) {
    list.replaceChildren();
    tasks.clear();
  }
  for (const task of page.items) list.append(renderTask(task));
  nextCursor = page.next_cursor;
  $("load-more").hidden = nextCursor === null;
  $("empty").hidden = list.children.length > 0;
}

function renderTask(task) {
  tasks.set(task.id, task);
  const item = $("task-template").content.firstElementChild.cloneNode(true);
  item.dataset.id = task.id;
  item.classList.toggle("completed", task.completed);
  item.querySelector(".toggle").checked = task.completed;
  item.querySelector(".title").textContent = task.title;
  return item;
}

/** Put the API's new version of a task in place, or drop it if the filter now hides it. */
function replaceTask(item, task) {
  const filter = currentFilter();
  if (filter !== null && task.completed !== filter) {
    removeTask(item);
    return;
  }
  item.replaceWith(renderTask(task));
}

function removeTask(item) {
  tasks.delete(item.dataset.id);
  item.remove();
  $("empty").hidden = list.children.length > 0;
}

// One listener per kind of event for the whole list, whatever its items are.
list.addEventListener(
  "click",
  handle(async (event) => {
    const item = event.target.closest(".task");
    if (!item) return;
    const task = tasks.get(item.dataset.id);
    if (event.target.matches(".edit")) {
      startEditing(item, task);
    } else if (event.target.matches(".cancel")) {
      item.replaceWith(renderTask(task));
    } else if (event.target.matches(".delete")) {
      event.target.disabled = true;
      try {
        await api.deleteTask(task);
      } catch (error) {
        if (error.status === 404) removeTask(item); // gone already: say so, and drop it
        else event.target.disabled = false;
        throw error;
      }
      removeTask(item);
    }
  }),
);

list.addEventListener(
  "change",
  handle(async (event) => {
    if (!event.target.matches(".toggle")) return;
    const item = event.target.closest(".task");
    const box = event.target;
    box.disabled = true;
    try {
      replaceTask(item, await api.updateTask(tasks.get(item.dataset.id), { completed: box.checked }));
    } catch (error) {
      box.checked = !box.checked;
      box.disabled = false;
      throw error;
    }
  }),
);

list.addEventListener(
  "submit",
  handle(async (event) => {
    const item = event.target.closest(".task");
    const title = item.querySelector(".title-input").value;
    replaceTask(item, await api.updateTask(tasks.get(item.dataset.id), { title }));
  }),
);

function startEditing(item, task) {
  item.querySelector(".title").hidden = true;
  item.querySelector(".edit").hidden = true;
  item.querySelector(".edit-form").hidden = false;
  const input = item.querySelector(".title-input");
  input.value = task.title;
  input.focus();
}

// --- forms and buttons -------------------------------------------------------------------

$("login-form").addEventListener(
  "submit",
  handle(async () => {
    const user = await api.login({ email: $("login-email").value, password: $("login-password").value });
    await showSignedIn(user);
  }),
);

$("signup-form").addEventListener(
  "submit",
  handle(async () => {
    const account = {
      name: $("signup-name").value,
      email: $("signup-email").value,
      password: $("signup-password").value,
    };
    await api.register(account);
    await showSignedIn(await api.login(account));
  }),
);

$("logout").addEventListener(
  "click",
  handle(async () => {
    try {
      await api.logout();
    } finally {
      showSignedOut(); // the tokens are forgotten locally whatever the server said
    }
  }),
);

$("new-task-form").addEventListener(
  "submit",
  handle(async () => {
    const input = $("new-task-title");
    await api.createTask({ title: input.value });
    input.value = "";
    await loadTasks({ append: false }); // the new task sorts first (newest first)
  }),
);

$("filter").addEventListener(
  "change",
  handle(() => loadTasks({ append: false })),
);

$("load-more").addEventListener(
  "click",
  handle(() => loadTasks({ append: true })),
);

// --- start: pick up an existing session from the refresh cookie ---------------------------

async function start() {
  $("api-url").textContent = api.baseUrl;
  setView("loading");
  try {
    const user = await api.restore();
    if (user) await showSignedIn(user);
    else showSignedOut();
  } catch (error) {
    showSignedOut();
    showError(error);
  }
}

start();
