// Shared Key signing of Azure Batch requests, as the official SDK does it (see the reference,
// "Shared Key authentication"). No DOM: the browser dashboard and node (tests) both import it.
//
//   Authorization: SharedKey <account>:<base64(HMAC-SHA256(base64decode(key), StringToSign))>
//
// The date goes in `ocp-date` (as the SDK sends it): a browser may not set `Date` itself, and an
// `ocp-` header is part of the signed string anyway.

/** The headers whose values make up the fixed part of the string to sign, in this order. */
export const SIGNED_HEADERS = Object.freeze([
  "content-encoding",
  "content-language",
  "content-length",
  "content-md5",
  "content-type",
  "date",
  "if-modified-since",
  "if-match",
  "if-none-match",
  "if-unmodified-since",
  "range",
]);

/** The API version the dashboard speaks. */
export const API_VERSION = "2025-06-01";

const utf8 = new TextEncoder();

/** RFC 1123, as `ocp-date` carries it: `Sun, 22 Nov 2026 08:35:56 GMT`. */
export function formatOcpDate(date) {
  // toUTCString has produced exactly this format in every engine since ES2018.
  return date.toUTCString();
}

/** Headers as lowercase-name -> value, from a plain object, a Map or a Headers. */
function headerEntries(headers) {
  if (!headers) return [];
  const entries =
    typeof headers.entries === "function" && !(headers.constructor === Object)
      ? Array.from(headers.entries())
      : Object.entries(headers);
  return entries
    .map(([name, value]) => [String(name).toLowerCase(), String(value)])
    .filter(([, value]) => value !== "");
}

/** `application/x-www-form-urlencoded` decoding: '+' is a space, `%xx` a byte. */
function formDecode(s) {
  const spaced = s.replace(/\+/g, " ");
  try {
    return decodeURIComponent(spaced);
  } catch {
    // Invalid escapes: decode what can be decoded, keep the rest as written (as Python does).
    return spaced.replace(/(%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}

/** Byte order of the UTF-8 encodings, which is code-point order (what the server sorts by). */
function compareUtf8(a, b) {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/**
 * The query parameters as signed: form-decoded, pairs without a value dropped, the first value
 * of each name kept, sorted by decoded name.
 */
export function canonicalQuery(rawQuery) {
  const query = rawQuery.startsWith("?") ? rawQuery.slice(1) : rawQuery;
  const params = [];
  const seen = new Set();
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const rawValue = pair.slice(eq + 1);
    if (rawValue === "") continue;
    const name = formDecode(pair.slice(0, eq));
    if (seen.has(name)) continue;
    seen.add(name);
    params.push([name, formDecode(rawValue)]);
  }
  params.sort((a, b) => compareUtf8(a[0], b[0]));
  return params;
}

/**
 * The string to sign for a request.
 *
 * `url` is the URL exactly as it will be sent (a URL object or an absolute string): its path is
 * signed still percent-encoded. `headers` are the headers that will be sent, `ocp-date`
 * included. A method other than GET/HEAD without a Content-Length signs "0", as the SDK does.
 */
export function stringToSign(account, method, url, headers) {
  const u = url instanceof URL ? url : new URL(url);
  const verb = method.toUpperCase();
  const entries = headerEntries(headers);
  const first = (name) => {
    const hit = entries.find(([n]) => n === name);
    return hit ? hit[1] : undefined;
  };
  let out = verb + "\n";
  for (const name of SIGNED_HEADERS) {
    let value = first(name);
    if (name === "content-length" && value === undefined) {
      value = verb === "GET" || verb === "HEAD" ? "" : "0";
    }
    out += (value ?? "") + "\n";
  }
  const ocp = entries
    .filter(([name]) => name.includes("ocp-"))
    .sort((a, b) => compareUtf8(a[0], b[0]) || compareUtf8(a[1], b[1]));
  for (const [name, value] of ocp) {
    out += `${name}:${value}\n`;
  }
  out += "/" + account + u.pathname;
  for (const [name, value] of canonicalQuery(u.search)) {
    out += `\n${name}:${value}`;
  }
  return out;
}

function base64ToBytes(b64) {
  const bin = atob(b64.trim());
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function bytesToBase64(bytes) {
  let bin = "";
  for (const b of new Uint8Array(bytes)) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Whether `key` is a usable account key (non-empty base64). */
export function isValidKey(key) {
  try {
    return base64ToBytes(key).length > 0;
  } catch {
    return false;
  }
}

/** `base64(HMAC-SHA256(base64decode(keyBase64), utf8(text)))`, with WebCrypto. */
export async function hmacSha256Base64(keyBase64, text) {
  const subtle = await webCrypto();
  const key = await subtle.importKey(
    "raw",
    base64ToBytes(keyBase64),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return bytesToBase64(await subtle.sign("HMAC", key, utf8.encode(text)));
}

/** WebCrypto: a global in browsers and node 19+; node 18 has it only as `node:crypto`. */
async function webCrypto() {
  if (globalThis.crypto?.subtle) return globalThis.crypto.subtle;
  const { webcrypto } = await import("node:crypto");
  return webcrypto.subtle;
}

/**
 * Signs a request: returns `headers` plus `ocp-date` (from `now` unless the caller set one) and
 * `Authorization`, as a new plain object.
 */
export async function signRequest({ account, key, method, url, headers = {}, now = new Date() }) {
  const out = {};
  for (const [name, value] of headerEntries(headers)) out[name] = value;
  if (!out["ocp-date"]) out["ocp-date"] = formatOcpDate(now);
  const signature = await hmacSha256Base64(key, stringToSign(account, method, url, out));
  out["authorization"] = `SharedKey ${account}:${signature}`;
  return out;
}
