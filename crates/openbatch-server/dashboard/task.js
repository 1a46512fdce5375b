// One task: its details (command line, state, exit code, failure, retries, node) and its logs
// (stdout.txt / stderr.txt through the task file API). A large log shows its tail, read with
// `ocp-range`; "Follow" polls for what was appended.

import { ApiError } from "./api.js";
import { badge, errorBox, h, link, replaceChildren, time } from "./dom.js";

/** How much of a log is shown at first: its last 64 KiB. */
const TAIL_BYTES = 64 * 1024;
/** How much the page keeps while following: older text is dropped past 1 MiB. */
const KEEP_CHARS = 1024 * 1024;
const FOLLOW_MS = 2000;
const LOGS = ["stdout.txt", "stderr.txt"];

export function taskView({ api }, jobId, taskId) {
  const details = h("div", { class: "task-details" });
  const logPre = h("pre", { class: "log", tabindex: "0", "aria-label": "Log" });
  const logStatus = h("p", { class: "muted log-status", "aria-live": "polite" });
  const followBox = h("input", { type: "checkbox", id: "follow" });
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Log file" });
  const el = h(
    "section",
    { class: "task" },
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", link(["jobs", jobId], jobId), " / "),
    h("h2", { tabindex: "-1" }, `Task ${taskId}`),
    details,
    h("h3", {}, "Logs"),
    h(
      "div",
      { class: "log-controls" },
      tabs,
      h("button", { type: "button", onclick: () => loadLog(true).catch(() => {}) }, "Reload log"),
      h("label", {}, followBox, " Follow"),
    ),
    logStatus,
    logPre,
  );

  let file = LOGS[0];
  // Bytes of the file shown so far end here; the decoder keeps a split UTF-8 sequence.
  let offset = 0;
  let decoder = new TextDecoder();
  // A load from scratch (another file, "Reload") supersedes whatever is in flight: results of
  // an older generation are dropped. Following skips a tick while a load is in flight.
  let generation = 0;
  let busy = false;

  function renderTabs() {
    replaceChildren(
      tabs,
      LOGS.map((name) =>
        h(
          "button",
          {
            type: "button",
            role: "tab",
            "aria-selected": name === file ? "true" : "false",
            "data-focus": `tab:${name}`,
            onclick: () => {
              file = name;
              renderTabs();
              loadLog(true).catch(() => {});
            },
          },
          name,
        ),
      ),
    );
  }

  /** Loads the log: from scratch (its tail) or, when following, what was appended. */
  async function loadLog(fromScratch) {
    if (!fromScratch && busy) return;
    const mine = fromScratch ? ++generation : generation;
    const stale = () => mine !== generation;
    const name = file;
    busy = true;
    try {
      const size = await api.taskFileSize(jobId, taskId, name);
      if (stale()) return;
      if (fromScratch || size < offset) {
        // From scratch, or the file shrank (a retry starts it over).
        const start = Math.max(0, size - TAIL_BYTES);
        decoder = new TextDecoder();
        const bytes = size > 0 ? await api.taskFileRange(jobId, taskId, name, start, size - 1) : new Uint8Array();
        if (stale()) return;
        logPre.textContent = decoder.decode(bytes, { stream: true });
        offset = start + bytes.length;
        logStatus.textContent =
          start > 0 ? `${name}: ${size} bytes; showing the last ${size - start}.` : `${name}: ${size} bytes.`;
        logPre.scrollTop = logPre.scrollHeight;
      } else if (size > offset) {
        const atBottom = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 4;
        const bytes = await api.taskFileRange(jobId, taskId, name, offset, size - 1);
        if (stale()) return;
        let text = logPre.textContent + decoder.decode(bytes, { stream: true });
        if (text.length > KEEP_CHARS) text = text.slice(text.length - KEEP_CHARS);
        logPre.textContent = text;
        offset += bytes.length;
        logStatus.textContent = `${name}: ${size} bytes; following.`;
        if (atBottom) logPre.scrollTop = logPre.scrollHeight;
      }
    } catch (err) {
      if (err instanceof ApiError && err.isAuthFailure) throw err;
      if (stale()) return;
      logPre.textContent = "";
      offset = 0;
      // A task that has not run yet has no files: say so, without failing the whole view.
      replaceChildren(logStatus, errorBox(err, name));
    } finally {
      if (!stale()) busy = false;
    }
  }

  const followTimer = setInterval(() => {
    if (followBox.checked && !document.hidden) loadLog(false).catch(() => {});
  }, FOLLOW_MS);

  let first = true;
  async function refresh() {
    const task = await api.task(jobId, taskId);
    replaceChildren(details, taskDetails(task));
    if (first) {
      first = false;
      renderTabs();
      await loadLog(true);
    }
  }

  return {
    el,
    refresh,
    dispose() {
      clearInterval(followTimer);
    },
  };
}

function taskDetails(t) {
  const ex = t.executionInfo ?? {};
  const fi = ex.failureInfo;
  const row = (k, v) => [h("dt", {}, k), h("dd", {}, v ?? "—")];
  return [
    h("p", {}, badge(t.state), t.displayName ? ` ${t.displayName}` : ""),
    h(
      "dl",
      { class: "props" },
      row("Command line", h("code", { class: "cmd" }, t.commandLine ?? "")),
      row("State", t.state),
      row("Exit code", ex.exitCode),
      row("Result", ex.result),
      row("Retries", `${ex.retryCount ?? 0} of ${maxRetries(t.constraints?.maxTaskRetryCount)}`),
      row("Requeues", ex.requeueCount ?? 0),
      row("Node", t.nodeInfo ? `${t.nodeInfo.nodeId ?? "?"} (pool ${t.nodeInfo.poolId ?? "?"})` : "not placed"),
      row("Created", time(t.creationTime)),
      row("Started", time(ex.startTime)),
      row("Ended", time(ex.endTime)),
      row("Required slots", t.requiredSlots ?? 1),
    ),
    fi
      ? h(
          "div",
          { class: "error", role: "note" },
          h("strong", {}, `Failure: ${fi.category ?? ""} ${fi.code ?? ""}`),
          h("div", {}, fi.message ?? ""),
          Array.isArray(fi.details) && fi.details.length
            ? h("ul", {}, fi.details.map((d) => h("li", {}, `${d.name}: ${d.value}`)))
            : null,
        )
      : null,
  ];
}

function maxRetries(n) {
  if (n === -1) return "unlimited";
  return n ?? 0;
}
