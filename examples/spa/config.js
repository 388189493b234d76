// Where the API lives, chosen at run time so the example needs no build step.
//
//   index.html?api=http://127.0.0.1:8000   use this API, and remember it (localStorage)
//   index.html                              the remembered API, else DEFAULT_API
//
// Only the URL is remembered: tokens never touch localStorage (see api.js).

const DEFAULT_API = "http://127.0.0.1:8000";
const STORAGE_KEY = "taskapi-example.api";

/** The API's origin, without a trailing slash. */
export function apiBaseUrl() {
  const fromQuery = new URLSearchParams(window.location.search).get("api");
  if (fromQuery) {
    const url = parseHttpUrl(fromQuery);
    if (url) {
      window.localStorage.setItem(STORAGE_KEY, url);
      return url;
    }
    console.warn(`ignoring ?api=${fromQuery}: not an http(s) URL`);
  }
  return parseHttpUrl(window.localStorage.getItem(STORAGE_KEY) ?? "") ?? DEFAULT_API;
}

/** An http(s) URL as origin + path without the trailing slash, or null. */
function parseHttpUrl(text) {
  try {
    const url = new URL(text);
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    return (url.origin + url.pathname).replace(/\/+$/, "");
  } catch {
    return null;
  }
}
