// Pools: each pool's state and sizes, and a heatmap of its nodes (one cell per node, coloured
// by state, with a legend and per-state counts). Selecting a cell lists its running tasks.

import { mapLimit } from "./api.js";
import { badge, errorBox, h, link, replaceChildren } from "./dom.js";

/** Node states in legend order: healthy and busy first, then transitions, then trouble. */
const NODE_STATES = [
  "idle",
  "running",
  "creating",
  "starting",
  "waitingforstarttask",
  "rebooting",
  "reimaging",
  "starttaskfailed",
  "offline",
  "preempted",
  "leavingpool",
  "unusable",
  "unknown",
  "upgradingos",
  "deallocating",
  "deallocated",
];

export function poolsView({ api, refresh: refreshAll }) {
  const el = h("section", { class: "pools" });
  // The selected node, kept across refreshes: { poolId, nodeId }.
  let selected = null;

  async function refresh() {
    const pools = await api.pools();
    const nodes = await mapLimit(pools, 4, (p) => api.nodes(p.id));
    let running = null;
    if (selected) {
      const poolIndex = pools.findIndex((p) => p.id === selected.poolId);
      const list = nodes[poolIndex];
      if (poolIndex < 0 || list instanceof Error || !list.some((n) => n.id === selected.nodeId)) {
        selected = null;
      } else {
        running = await api.runningTasksOn(selected.poolId, selected.nodeId).catch((e) => e);
      }
    }
    replaceChildren(
      el,
      h("h2", { tabindex: "-1" }, "Pools"),
      pools.length
        ? pools.map((p, i) => poolCard(p, nodes[i], running))
        : h("p", { class: "muted" }, "No pools yet. Create one with the CLI or an SDK: it appears here."),
    );
  }

  function select(poolId, nodeId) {
    selected = selected && selected.poolId === poolId && selected.nodeId === nodeId ? null : { poolId, nodeId };
    refreshAll();
  }

  function poolCard(pool, nodes, running) {
    const rows = [
      ["State", badge(pool.state)],
      ["Allocation", badge(pool.allocationState)],
      ["VM size", pool.vmSize ?? "—"],
      ["Dedicated nodes", `${pool.currentDedicatedNodes ?? 0} of ${pool.targetDedicatedNodes ?? 0}`],
      ["Low-priority nodes", `${pool.currentLowPriorityNodes ?? 0} of ${pool.targetLowPriorityNodes ?? 0}`],
      ["Task slots per node", pool.taskSlotsPerNode ?? 1],
      ["Autoscale", pool.enableAutoScale ? "on" : "off"],
    ];
    const errors = Array.isArray(pool.resizeErrors) ? pool.resizeErrors : [];
    return h(
      "article",
      { class: "card", "aria-label": `Pool ${pool.id}` },
      h("h3", {}, pool.id),
      h("dl", { class: "props" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      errors.length
        ? h(
            "div",
            { class: "error" },
            h("strong", {}, "Resize errors"),
            h("ul", {}, errors.map((e) => h("li", {}, `${e.code ?? ""}: ${e.message ?? ""}`))),
          )
        : null,
      nodes instanceof Error ? errorBox(nodes, "Nodes") : heatmap(pool, nodes, running),
    );
  }

  function heatmap(pool, nodes, running) {
    if (!nodes.length) return h("p", { class: "muted" }, "No nodes.");
    const counts = new Map();
    for (const n of nodes) counts.set(n.state, (counts.get(n.state) ?? 0) + 1);
    const order = [...NODE_STATES, ...[...counts.keys()].filter((s) => !NODE_STATES.includes(s))];
    const legend = h(
      "ul",
      { class: "legend", "aria-label": `Node states of pool ${pool.id}` },
      order
        .filter((s) => counts.has(s))
        .map((s) => h("li", {}, h("span", { class: `swatch ${stateClass(s)}` }), `${s} `, h("strong", {}, counts.get(s)))),
    );
    const cells = h(
      "div",
      { class: "heatmap", role: "group", "aria-label": `Nodes of pool ${pool.id}` },
      nodes.map((n) => {
        const label = `${n.id}: ${n.state}, ${n.runningTasksCount ?? 0} running task(s), ${n.runningTaskSlotsCount ?? 0} slot(s) in use${n.isDedicated === false ? ", low-priority" : ""}${n.schedulingState === "disabled" ? ", scheduling disabled" : ""}`;
        const isSelected = selected && selected.poolId === pool.id && selected.nodeId === n.id;
        // A button: focusable, and Enter or Space selects it, with no script of our own.
        return h("button", {
          type: "button",
          class: `cell ${stateClass(n.state)}${isSelected ? " selected" : ""}`,
          "aria-pressed": isSelected ? "true" : "false",
          title: label,
          "aria-label": label,
          "data-focus": `node:${pool.id}:${n.id}`,
          onclick: () => select(pool.id, n.id),
        });
      }),
    );
    const node = selected && selected.poolId === pool.id ? nodes.find((n) => n.id === selected.nodeId) : null;
    return h("div", { class: "nodes" }, legend, cells, node ? nodeDetail(pool, node, running) : null);
  }

  function nodeDetail(pool, node, running) {
    let tasks;
    if (running instanceof Error) tasks = errorBox(running, "Running tasks");
    else if (!running || !running.length) tasks = h("p", { class: "muted" }, "No running tasks.");
    else tasks = h("ul", {}, running.map((t) => h("li", {}, link(["jobs", t.jobId, "tasks", t.taskId], `${t.jobId} / ${t.taskId}`))));
    const recent = (node.recentTasks ?? []).slice(0, 5);
    return h(
      "div",
      { class: "node-detail", "aria-live": "polite" },
      h("h4", {}, `Node ${node.id} `, badge(node.state)),
      h("p", {}, `Scheduling ${node.schedulingState ?? "enabled"}; ${node.isDedicated === false ? "low-priority" : "dedicated"}.`),
      h("h5", {}, "Running tasks"),
      tasks,
      recent.length
        ? [
            h("h5", {}, "Recent tasks"),
            h(
              "ul",
              {},
              recent.map((t) =>
                h("li", {}, link(["jobs", t.jobId ?? "", "tasks", t.taskId ?? ""], `${t.jobId} / ${t.taskId}`), " ", badge(t.taskState)),
              ),
            ),
          ]
        : null,
    );
  }

  return { el, refresh, dispose() {} };
}

/** The CSS class of a node state (only letters, whatever the API sent). */
export function stateClass(state) {
  return `state-${String(state ?? "unknown").replace(/[^a-z0-9]/gi, "")}`;
}
