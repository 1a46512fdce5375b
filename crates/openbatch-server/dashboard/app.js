// The dashboard: sign-in, hash routing (#/pools, #/jobs, #/jobs/<job>, #/jobs/<job>/tasks/<task>),
// and auto-refresh. Each view is `{ el, refresh(), dispose() }` (pools.js, jobs.js, task.js).

import { ApiError, BatchApi } from "./api.js";
import { errorBox, replaceChildren } from "./dom.js";
import { isValidKey } from "./sign.js";
import { jobView, jobsView } from "./jobs.js";
import { poolsView } from "./pools.js";
import { taskView } from "./task.js";

/** sessionStorage only: the key lives as long as this tab, never in a cookie or a URL. */
const STORE = "openbatch.dashboard.credentials";
const REFRESH_MS = 5000;

const $ = (id) => document.getElementById(id);

let api = null;
let view = null;
let refreshing = null;

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORE) ?? "null");
    if (s && typeof s.account === "string" && typeof s.key === "string") {
      return new BatchApi(s.account, s.key, location.origin);
    }
  } catch {
    // A broken entry is the same as none.
  }
  return null;
}

function showBanner(content) {
  replaceChildren($("banner"), content ?? []);
}

function showLogin(err) {
  $("nav").hidden = true;
  $("session").hidden = true;
  $("view").replaceChildren();
  const form = $("login");
  form.hidden = false;
  replaceChildren($("login-error"), err ? errorBox(err, "Sign-in failed") : []);
  $(form.elements.account.value ? "login-key" : "login-account").focus();
}

function signOut(err) {
  sessionStorage.removeItem(STORE);
  api = null;
  disposeView();
  showBanner(null);
  $("login-key").value = "";
  showLogin(err);
}

function disposeView() {
  if (view && view.dispose) view.dispose();
  view = null;
}

/** The view for the current location hash. */
function viewForHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const q = hash.indexOf("?");
  const path = q < 0 ? hash : hash.slice(0, q);
  const query = new URLSearchParams(q < 0 ? "" : hash.slice(q + 1));
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = [];
  }
  const ctx = { api, refresh: () => refresh() };
  if (parts[0] === "jobs" && parts.length === 1) return ["jobs", jobsView(ctx)];
  if (parts[0] === "jobs" && parts.length === 2) return ["jobs", jobView(ctx, parts[1], query)];
  if (parts[0] === "jobs" && parts[2] === "tasks" && parts.length === 4) {
    return ["jobs", taskView(ctx, parts[1], parts[3])];
  }
  return ["pools", poolsView(ctx)];
}

function mount() {
  disposeView();
  showBanner(null);
  const [section, v] = viewForHash();
  view = v;
  for (const a of $("nav").querySelectorAll("a")) {
    if (a.dataset.view === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  $("view").replaceChildren(view.el);
  // If a refresh of the previous view was in flight, this view's own refresh follows it.
  refresh()
    .then(() => refreshing)
    .then(() => {
    // Move focus to the new view's heading, for keyboard and screen-reader users.
      const heading = view && view.el.querySelector("h2");
      if (heading && !view.el.contains(document.activeElement)) heading.focus({ preventScroll: true });
    });
}

function handleError(err) {
  if (err instanceof ApiError && err.isAuthFailure) {
    signOut(err);
    return;
  }
  showBanner(errorBox(err));
}

/** Refreshes the current view. A call while one is in flight runs once more after it (the
 * user may have changed what the view shows: a page, a selection). */
let again = false;
function refresh() {
  if (!view) return Promise.resolve();
  if (refreshing) {
    again = true;
    return refreshing;
  }
  const current = view;
  refreshing = current
    .refresh()
    .then(() => {
      if (view !== current) return;
      showBanner(null);
      $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    })
    .catch((err) => {
      if (view === current) handleError(err);
    })
    .finally(() => {
      refreshing = null;
      if (again) {
        again = false;
        refresh();
      }
    });
  return refreshing;
}

function start() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  $("account").textContent = api.account;
  mount();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const account = form.elements.account.value.trim();
  const key = form.elements.key.value.trim();
  if (!account || !isValidKey(key)) {
    replaceChildren(
      $("login-error"),
      errorBox(new ApiError(0, "InvalidKey", "Enter the account name, and a key that is base64 text.")),
    );
    return;
  }
  const candidate = new BatchApi(account, key, location.origin);
  try {
    // One cheap signed call: a wrong key or account is answered 403 AuthenticationFailed.
    await candidate.listPage("/pools", { maxresults: 1 });
  } catch (err) {
    replaceChildren($("login-error"), errorBox(err, "Sign-in failed"));
    return;
  }
  sessionStorage.setItem(STORE, JSON.stringify({ account, key }));
  form.elements.key.value = "";
  api = candidate;
  start();
});

$("sign-out").addEventListener("click", () => signOut(null));
$("refresh-now").addEventListener("click", () => refresh());

window.addEventListener("hashchange", () => {
  if (api) mount();
});

// Auto-refresh while the tab is visible; catch up at once when it becomes visible again.
setInterval(() => {
  if (api && !document.hidden && $("auto-refresh").checked) refresh();
}, REFRESH_MS);
document.addEventListener("visibilitychange", () => {
  if (api && !document.hidden && $("auto-refresh").checked) refresh();
});

api = loadSession();
if (api) start();
else showLogin(null);
