// DOM helpers. Every string goes in as a text node or an attribute value, never as HTML, so
// nothing the API returns can become markup.

/**
 * `h("a", { href: "#/jobs", class: "x", onclick: fn }, "text", child, [more])`.
 * Children are Nodes or values shown as text; null, undefined and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "value") {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`, keeping keyboard focus on the element with the same
 * `data-focus` key if there was one (auto-refresh must not throw the user's place away). */
export function replaceChildren(el, ...children) {
  const focused = document.activeElement;
  const key = focused && el.contains(focused) ? focused.getAttribute("data-focus") : null;
  el.replaceChildren();
  append(el, children);
  if (key) {
    const again = Array.from(el.querySelectorAll("[data-focus]")).find(
      (e) => e.getAttribute("data-focus") === key,
    );
    if (again) again.focus({ preventScroll: true });
  }
}

/** A hash-route link: `link(["jobs", id], text)` → `#/jobs/<id encoded>`. */
export function route(parts, query) {
  const path = "#/" + parts.map((p) => encodeURIComponent(p)).join("/");
  const q = query ? new URLSearchParams(query).toString() : "";
  return q ? `${path}?${q}` : path;
}

export function link(parts, text, query) {
  const href = route(parts, query);
  return h("a", { href, "data-focus": href }, text);
}

/** An ISO timestamp as local time, or an em dash. */
export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A state as a badge: text plus a class the stylesheet colours. */
export function badge(state) {
  const s = String(state ?? "unknown");
  return h("span", { class: `badge state-${s.replace(/[^a-z0-9]/gi, "")}` }, s);
}

/** An ApiError (or any error) as an alert box. */
export function errorBox(err, context) {
  const code = err && err.code ? err.code : "Error";
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, context ? `${context}: ` : "", code),
    err && err.status ? ` (HTTP ${err.status})` : "",
    h("div", {}, err && err.message ? err.message : String(err)),
    err && Array.isArray(err.details) && err.details.length
      ? h("ul", {}, err.details.map((d) => h("li", {}, `${d.key}: ${d.value}`)))
      : null,
  );
}
