// Jobs: the list with each job's task counts, and one job's tasks (paged with odata.nextLink,
// filtered by state).

import { mapLimit } from "./api.js";
import { badge, h, link, replaceChildren, route, time } from "./dom.js";

const COUNTS = ["active", "running", "completed", "succeeded", "failed"];
const TASK_STATES = ["active", "preparing", "running", "completed"];

export function jobsView({ api }) {
  const el = h("section", { class: "jobs" });

  async function refresh() {
    const jobs = await api.jobs();
    const counts = await mapLimit(jobs, 6, (j) => api.taskCounts(j.id));
    replaceChildren(
      el,
      h("h2", { tabindex: "-1" }, "Jobs"),
      jobs.length
        ? h(
            "table",
            {},
            h("caption", { class: "visually-hidden" }, "Jobs and their task counts"),
            h(
              "thead",
              {},
              h("tr", {}, ["Job", "State", "Pool", "Priority", ...COUNTS.map(capitalize), "Created"].map((c) => h("th", { scope: "col" }, c))),
            ),
            h(
              "tbody",
              {},
              jobs.map((j, i) => {
                const c = counts[i] instanceof Error ? null : counts[i].taskCounts;
                return h(
                  "tr",
                  {},
                  h("th", { scope: "row" }, link(["jobs", j.id], j.id)),
                  h("td", {}, badge(j.state)),
                  h("td", {}, j.poolInfo?.poolId ?? "(auto pool)"),
                  h("td", { class: "num" }, j.priority ?? 0),
                  COUNTS.map((k) =>
                    h(
                      "td",
                      { class: `num${k === "failed" && c && c.failed > 0 ? " bad" : ""}`, title: c ? null : counts[i].message },
                      c ? c[k] : "?",
                    ),
                  ),
                  h("td", {}, time(j.creationTime)),
                );
              }),
            ),
          )
        : h("p", { class: "muted" }, "No jobs yet."),
    );
  }

  return { el, refresh, dispose() {} };
}

export function jobView({ api, refresh: refreshAll }, jobId, query) {
  const state = TASK_STATES.includes(query.get("state")) ? query.get("state") : "";
  const el = h("section", { class: "job" });
  // The links of the pages before the current one (null: the first page), and the current one.
  const previous = [];
  let current = null;

  async function refresh() {
    const [job, counts, page] = await Promise.all([
      api.job(jobId),
      api.taskCounts(jobId),
      api.tasksPage(jobId, { state, next: current }),
    ]);
    replaceChildren(
      el,
      h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / "),
      h("h2", { tabindex: "-1" }, `Job ${job.id} `, badge(job.state)),
      h(
        "dl",
        { class: "props" },
        h("dt", {}, "Pool"),
        h("dd", {}, job.poolInfo?.poolId ?? "(auto pool)"),
        COUNTS.map((k) => [h("dt", {}, capitalize(k)), h("dd", {}, counts.taskCounts?.[k] ?? 0)]),
        job.executionInfo?.terminateReason
          ? [h("dt", {}, "Terminate reason"), h("dd", {}, job.executionInfo.terminateReason)]
          : null,
      ),
      filterForm(),
      tasksTable(page.items),
      pager(page.nextLink),
    );
  }

  function filterForm() {
    const select = h(
      "select",
      {
        id: "task-state",
        "data-focus": "task-state",
        onchange: (e) => {
          const s = e.target.value;
          location.hash = route(["jobs", jobId], s ? { state: s } : undefined);
        },
      },
      h("option", { value: "" }, "all"),
      TASK_STATES.map((s) => h("option", { value: s }, s)),
    );
    select.value = state;
    return h("p", { class: "filter" }, h("label", { for: "task-state" }, "Tasks in state "), select);
  }

  function tasksTable(tasks) {
    if (!tasks.length) return h("p", { class: "muted" }, state ? `No ${state} tasks.` : "No tasks.");
    return h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, `Tasks of job ${jobId}`),
      h("thead", {}, h("tr", {}, ["Task", "State", "Exit code", "Result", "Node", "Retries", "Started", "Ended"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        tasks.map((t) => {
          const ex = t.executionInfo ?? {};
          return h(
            "tr",
            {},
            h("th", { scope: "row" }, link(["jobs", jobId, "tasks", t.id], t.id)),
            h("td", {}, badge(t.state)),
            h("td", { class: "num" }, ex.exitCode ?? "—"),
            h("td", { class: ex.result === "failure" ? "bad" : null }, ex.result ?? "—"),
            h("td", {}, t.nodeInfo?.nodeId ?? "—"),
            h("td", { class: "num" }, ex.retryCount ?? 0),
            h("td", {}, time(ex.startTime)),
            h("td", {}, time(ex.endTime)),
          );
        }),
      ),
    );
  }

  function pager(nextLink) {
    const go = (link) => {
      current = link;
      refreshAll();
    };
    return h(
      "nav",
      { class: "pager", "aria-label": "Task pages" },
      h(
        "button",
        {
          type: "button",
          "data-focus": "prev",
          disabled: previous.length === 0,
          onclick: () => go(previous.pop()),
        },
        "Previous page",
      ),
      h("span", { class: "muted" }, ` Page ${previous.length + 1} `),
      h(
        "button",
        {
          type: "button",
          "data-focus": "next",
          disabled: !nextLink,
          onclick: () => {
            previous.push(current);
            go(nextLink);
          },
        },
        "Next page",
      ),
    );
  }

  return { el, refresh, dispose() {} };
}

function capitalize(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
