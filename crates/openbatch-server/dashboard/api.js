// A small Azure Batch REST client over fetch(), signing every request with Shared Key
// (sign.js). No DOM: the dashboard uses it in the browser, the end-to-end test under node.

import { API_VERSION, signRequest } from "./sign.js";

/** An error answered by the API (Azure error body: `code`, `message.value`), or a failed fetch. */
export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** Whether the credentials are what failed (wrong key, unknown account, no signature). */
  get isAuthFailure() {
    return this.status === 401 || this.code === "AuthenticationFailed";
  }
}

/** Reads an Azure Batch error body into an ApiError (tolerating anything else). */
async function errorFrom(resp) {
  let code = `HTTP${resp.status}`;
  let message = resp.statusText || `HTTP status ${resp.status}`;
  let details = [];
  try {
    const body = await resp.json();
    if (body && typeof body.code === "string") code = body.code;
    const value = body?.message?.value ?? body?.message;
    // The service appends "\nRequestId:...\nTime:..." to the message; the first line is the text.
    if (typeof value === "string") message = value.split("\n")[0];
    if (Array.isArray(body?.values)) {
      details = body.values
        .filter((v) => v && typeof v.key === "string")
        .map((v) => ({ key: v.key, value: String(v.value ?? "") }));
    }
  } catch {
    // Not JSON (a HEAD has no body at all): status and text are all there is.
  }
  return new ApiError(resp.status, code, message, details);
}

export class BatchApi {
  /**
   * @param {string} account the Batch account name
   * @param {string} key its base64 key
   * @param {string} endpoint the server's origin (the dashboard's own in the browser)
   */
  constructor(account, key, endpoint) {
    this.account = account;
    this.key = key;
    this.endpoint = endpoint;
  }

  /** The absolute URL of `path` with `query` (an object) and the api-version. */
  url(path, query = {}) {
    const u = new URL(path, this.endpoint);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") u.searchParams.set(name, String(value));
    }
    if (!u.searchParams.has("api-version")) u.searchParams.set("api-version", API_VERSION);
    return u;
  }

  /**
   * Sends a signed request and returns the Response (2xx) or throws an ApiError.
   * `target` is a path (with `query`) or an absolute URL (an `odata.nextLink`).
   */
  async send(method, target, { query, headers = {}, accept = "application/json" } = {}) {
    let url;
    if (typeof target === "string" && /^https?:/i.test(target)) {
      // An odata.nextLink is absolute, built from what the server believes its URL is (its
      // public_url, or the Host a proxy passed on): keep its path and query, on our origin.
      const next = new URL(target);
      url = new URL(next.pathname + next.search, this.endpoint);
    } else {
      url = this.url(target, query);
    }
    const signed = await signRequest({
      account: this.account,
      key: this.key,
      method,
      url,
      headers: { ...headers, accept },
    });
    let resp;
    try {
      // no-store: the HTTP cache would otherwise add If-None-Match/If-Modified-Since after
      // signing, and the server would then see a signature over different headers.
      resp = await fetch(url, { method, headers: signed, cache: "no-store", credentials: "omit" });
    } catch (e) {
      throw new ApiError(0, "NetworkError", `The server could not be reached: ${e.message}`);
    }
    if (!resp.ok) throw await errorFrom(resp);
    return resp;
  }

  async getJson(target, query) {
    const resp = await this.send("GET", target, { query });
    return resp.json();
  }

  /** One page of a list: `{ items, nextLink }`. */
  async listPage(target, query) {
    const body = await this.getJson(target, query);
    return { items: Array.isArray(body.value) ? body.value : [], nextLink: body["odata.nextLink"] || null };
  }

  /** Every item of a list, following `odata.nextLink`, up to `limit` items. */
  async listAll(path, query = {}, limit = 10000) {
    const items = [];
    let page = await this.listPage(path, query);
    items.push(...page.items);
    while (page.nextLink && items.length < limit) {
      page = await this.listPage(page.nextLink);
      items.push(...page.items);
    }
    return items;
  }

  pools() {
    return this.listAll("/pools");
  }

  nodes(poolId) {
    return this.listAll(`/pools/${enc(poolId)}/nodes`, {
      $select: "id,state,schedulingState,runningTasksCount,runningTaskSlotsCount,recentTasks,isDedicated",
    });
  }

  jobs() {
    return this.listAll("/jobs");
  }

  job(jobId) {
    return this.getJson(`/jobs/${enc(jobId)}`);
  }

  taskCounts(jobId) {
    return this.getJson(`/jobs/${enc(jobId)}/taskcounts`);
  }

  /** A page of a job's tasks; `state` filters (`$filter=state eq '...'`), `next` continues. */
  tasksPage(jobId, { state, maxResults = 50, next } = {}) {
    if (next) return this.listPage(next);
    return this.listPage(`/jobs/${enc(jobId)}/tasks`, {
      maxresults: maxResults,
      $filter: state ? `state eq '${state}'` : undefined,
    });
  }

  /** The tasks running on a node: the running tasks of the pool's jobs, filtered by node. */
  async runningTasksOn(poolId, nodeId) {
    const jobs = (await this.listAll("/jobs", { $select: "id,state,poolInfo" })).filter(
      (j) => j.poolInfo?.poolId === poolId && j.state !== "completed",
    );
    const perJob = await mapLimit(jobs, 4, (j) =>
      this.listAll(`/jobs/${enc(j.id)}/tasks`, {
        $filter: `state eq 'running' and nodeInfo/nodeId eq ${odataString(nodeId)}`,
        $select: "id,state,nodeInfo",
      }).then((tasks) => tasks.map((t) => ({ jobId: j.id, taskId: t.id }))),
    );
    return perJob.flatMap((r) => (r instanceof Error ? [] : r));
  }

  task(jobId, taskId) {
    return this.getJson(`/jobs/${enc(jobId)}/tasks/${enc(taskId)}`);
  }

  /** The size of a task file in bytes (HEAD). */
  async taskFileSize(jobId, taskId, path) {
    const resp = await this.send("HEAD", taskFilePath(jobId, taskId, path), { accept: "*/*" });
    return Number(resp.headers.get("content-length") ?? "0");
  }

  /** Bytes `start..` (to the end, or to `end` inclusive) of a task file, with `ocp-range`. */
  async taskFileRange(jobId, taskId, path, start = 0, end = undefined) {
    const headers = start > 0 || end !== undefined ? { "ocp-range": `bytes=${start}-${end ?? ""}` } : {};
    const resp = await this.send("GET", taskFilePath(jobId, taskId, path), {
      headers,
      accept: "application/octet-stream",
    });
    return new Uint8Array(await resp.arrayBuffer());
  }
}

/** A path segment, percent-encoded (ids may hold characters a URL path cannot). */
export function enc(segment) {
  return encodeURIComponent(segment);
}

/** A task file's path: the file path is one encoded segment, as the SDK sends it. */
function taskFilePath(jobId, taskId, path) {
  return `/jobs/${enc(jobId)}/tasks/${enc(taskId)}/files/${enc(path)}`;
}

/** An OData string literal ('' escapes a quote). */
export function odataString(s) {
  return `'${String(s).replace(/'/g, "''")}'`;
}

/** `fn` over `items`, at most `limit` at a time, in order; a failure becomes that item's result. */
export async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (e) {
        results[i] = e instanceof Error ? e : new Error(String(e));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
