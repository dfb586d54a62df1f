// The pages. Each view fills `main` and returns a cleanup function (sockets, timers).

import { api, ApiError, clearKey, getKey, openSocket, setKey } from "./api.js";
import { clear, fmtDuration, fmtTime, h, statusBadge, table } from "./dom.js";
import { drawFlow } from "./graph.js";
import { describe, errorText, JobModel } from "./live.js";

const JOB_STATUSES = ["pending", "running", "idle", "paused", "completed", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

function errorBox(err) {
  const msg = err instanceof ApiError ? `${err.message} (${err.status} ${err.code})` : String(err.message || err);
  return h("p.error", { role: "alert" }, msg);
}

function flowLink(name) {
  return h("a", { href: `#/flows/${encodeURIComponent(name)}` }, name);
}

function jobLink(id, text) {
  return h("a", { href: `#/jobs/${encodeURIComponent(id)}` }, text || id);
}

function seconds(a, b) {
  if (!a) return null;
  return ((b ? new Date(b) : new Date()) - new Date(a)) / 1000;
}

// -- login ---------------------------------------------------------------------------------

export function loginView(main, { next, message, done }) {
  const input = h("input#api-key", { type: "password", name: "api-key", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("p.error", { role: "alert", hidden: !message }, message || "");
  const form = h("form.card.login", {
    on: {
      submit: async (e) => {
        e.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        status.hidden = true;
        try {
          await api("/health", { key });
        } catch (err) {
          status.textContent = err.status === 403 || err.status === 401
            ? "That API key was refused by the server." : `Could not log in: ${err.message}`;
          status.hidden = false;
          input.focus();
          return;
        }
        setKey(key);
        done(next && next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/flows");
      },
    },
  },
  h("label", { for: "api-key" }, "API key"),
  h("p.hint#api-key-hint", null, "The key is kept in this tab only (session storage) and sent in the X-API-Key header."),
  input,
  h("button", { type: "submit" }, "Log in"),
  status);
  input.setAttribute("aria-describedby", "api-key-hint");
  main.append(heading("Log in"), form);
  input.focus();
  return () => {};
}

// -- flows ---------------------------------------------------------------------------------

export async function flowsView(main) {
  main.append(heading("Flows"));
  const { items } = await api("/flows");
  if (!items.length) {
    main.append(h("p", null, "No flows are registered. Start the server with --flows DIR, or POST a flow document to /api/flows."));
    return () => {};
  }
  main.append(table("Registered flows", ["Name", "Flow id", "Routines", "Connections"],
    items.map((f) => h("tr", null, h("td", null, flowLink(f.name)), h("td", null, f.flow_id),
      h("td.num", null, f.routines), h("td.num", null, f.connections)))));
  return () => {};
}

function handlerText(eh) {
  if (!eh) return "—";
  if (eh.strategy === "retry") return `retry ×${eh.max_retries} (delay ${eh.retry_delay} s, backoff ${eh.retry_backoff}), then ${eh.fallback}`;
  return eh.strategy + (eh.is_critical ? " (critical)" : "");
}

function graphRegion(svg, label) {
  return h("figure.graph-wrap", { role: "group", "aria-label": label },
    h("div.graph-scroll", { tabindex: "0", role: "region", "aria-label": `${label} (scrolls)` }, svg));
}

function routinesTable(flow) {
  return table("Routines", ["Routine", "Type", "Policy", "On error", "Slots", "Events"],
    Object.entries(flow.routines).map(([rid, r]) => h("tr", null,
      h("th", { scope: "row" }, rid), h("td", null, r.type),
      h("td", null, r.policy + (Object.keys(r.policy_params).length ? ` ${JSON.stringify(r.policy_params)}` : "")),
      h("td", null, handlerText(r.error_handler)),
      h("td", null, r.slots.join(", ") || "—"),
      h("td", null, Object.keys(r.events).join(", ") || "—"))));
}

export async function flowView(main, { name }) {
  main.append(heading(`Flow ${name}`));
  const flow = await api(`/flows/${encodeURIComponent(name)}`);
  const meta = h("dl.meta", null,
    h("dt", null, "Flow id"), h("dd", null, flow.flow_id),
    h("dt", null, "Entry"), h("dd", null, flow.entry ? `${flow.entry.routine}.${flow.entry.slot}` : "none"),
    h("dt", null, "Timeout"), h("dd", null, flow.execution_timeout ? `${flow.execution_timeout} s` : "none"),
    h("dt", null, "On error"), h("dd", null, handlerText(flow.error_handler)));
  const { svg } = drawFlow(flow);

  const params = h("textarea#entry-params", { rows: 3, spellcheck: "false" }, "{}");
  const keepOpen = h("input#keep-open", { type: "checkbox" });
  const msg = h("p.error", { role: "alert", hidden: true });
  const start = h("form.card.start-job", {
    "aria-labelledby": "start-title",
    on: {
      submit: async (e) => {
        e.preventDefault();
        msg.hidden = true;
        let entry;
        try {
          entry = JSON.parse(params.value || "{}");
          if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw new Error("entry parameters must be a JSON object, e.g. {\"x\": 1}");
        } catch (err) {
          msg.textContent = `Entry parameters: ${err.message}`;
          msg.hidden = false;
          params.focus();
          return;
        }
        try {
          const job = await api("/jobs", { method: "POST", body: { flow: name, entry_params: entry, keep_open: keepOpen.checked } });
          location.hash = `#/jobs/${encodeURIComponent(job.job_id)}`;
        } catch (err) {
          msg.textContent = `Could not start the job: ${err.message}`;
          msg.hidden = false;
        }
      },
    },
  },
  h("h2#start-title", null, "Start a job"),
  h("label", { for: "entry-params" }, "Entry parameters (JSON object)"),
  params,
  h("div.check", null, keepOpen, h("label", { for: "keep-open" }, "Keep the job open for posted payloads")),
  h("button", { type: "submit" }, "Start job"),
  msg);
  if (!flow.entry) {
    start.querySelector("button").disabled = true;
    start.append(h("p.hint", null, "This flow has no entry: start it from code or post to a routine."));
  }
  main.append(meta, graphRegion(svg, `Graph of flow ${name}`), start, routinesTable(flow),
    h("p", null, h("a", { href: `#/jobs?flow=${encodeURIComponent(name)}` }, `Jobs of ${name}`)));
  return () => {};
}

// -- jobs list -----------------------------------------------------------------------------

export async function jobsView(main, { query }) {
  main.append(heading("Jobs"));
  const flows = (await api("/flows")).items;
  const status = h("select#filter-status", { name: "status" },
    h("option", { value: "" }, "any"), JOB_STATUSES.map((st) => h("option", { value: st, selected: query.get("status") === st }, st)));
  const flow = h("select#filter-flow", { name: "flow" },
    h("option", { value: "" }, "any"), flows.map((f) => h("option", { value: f.name, selected: query.get("flow") === f.name }, f.name)));
  const limit = 50;
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const go = (changes) => {
    const q = new URLSearchParams({ status: status.value, flow: flow.value, offset: String(offset), ...changes });
    for (const [k, v] of [...q]) if (!v || v === "0") q.delete(k);
    location.hash = `#/jobs${[...q].length ? `?${q}` : ""}`;
  };
  const filters = h("form.filters", {
    role: "search", "aria-label": "Filter jobs",
    on: { submit: (e) => { e.preventDefault(); go({ offset: "0" }); } },
  },
  h("label", { for: "filter-status" }, "Status"), status,
  h("label", { for: "filter-flow" }, "Flow"), flow,
  h("button", { type: "submit" }, "Filter"));
  status.addEventListener("change", () => go({ offset: "0" }));
  flow.addEventListener("change", () => go({ offset: "0" }));
  const results = h("div.results", { "aria-live": "polite" });
  main.append(filters, results);

  const load = async () => {
    const page = await api("/jobs", { query: { status: query.get("status"), flow: query.get("flow"), limit, offset } });
    clear(results);
    results.append(h("p.count", null, `${page.total} job${page.total === 1 ? "" : "s"}`));
    if (page.items.length) {
      results.append(table("Jobs, newest first", ["Job", "Flow", "Status", "Created", "Duration", "Error"],
        page.items.map((j) => h("tr", { dataset: { job: j.job_id } },
          h("td.mono", null, jobLink(j.job_id, j.job_id.slice(0, 12))),
          h("td", null, j.flow_id), h("td", null, statusBadge(j.status)),
          h("td", null, fmtTime(j.created_at)),
          h("td.num", null, fmtDuration(seconds(j.started_at, j.finished_at))),
          h("td", null, j.error ? errorText(j.error_type, j.error) : "")))));
    }
    const nav = h("div.pager");
    if (offset > 0) nav.append(h("button", { type: "button", on: { click: () => go({ offset: String(Math.max(0, offset - limit)) }) } }, "Newer"));
    if (offset + limit < page.total) nav.append(h("button", { type: "button", on: { click: () => go({ offset: String(offset + limit) }) } }, "Older"));
    results.append(nav);
  };
  await load();
  // refresh while the page is open (the list has no stream of its own)
  // (not while the keyboard focus is in the list: rebuilding it would lose the focus)
  const timer = setInterval(() => {
    if (!document.hidden && !results.contains(document.activeElement)) load().catch(() => {});
  }, 3000);
  return () => clearInterval(timer);
}

// -- one job -------------------------------------------------------------------------------

async function findFlow(flowId) {
  try {
    return await api(`/flows/${encodeURIComponent(flowId)}`);
  } catch (err) {
    if (err.status !== 404) throw err;
  }
  const { items } = await api("/flows");
  const match = items.find((f) => f.flow_id === flowId);
  if (!match) throw new ApiError(404, "unknown_flow", `the flow ${flowId} of this job is no longer registered`);
  return api(`/flows/${encodeURIComponent(match.name)}`);
}

export async function jobView(main, { id }) {
  const title = heading(`Job ${id.slice(0, 12)}`);
  main.append(title);
  let summary = await api(`/jobs/${encodeURIComponent(id)}`);
  const flow = await findFlow(summary.flow_id);
  const model = new JobModel(flow, summary);
  const graph = drawFlow(flow, { stats: true, title: `Live status of the routines of job ${id}` });
  let closed = false;
  let socket = null;
  let retryTimer = null;
  let reconcileTimer = null;

  // header: status, times, controls
  const statusEl = h("span#job-status");
  const live = h("span.live#live-state", null, "connecting…");
  const times = h("dl.meta");
  const actionMsg = h("p.action-msg", { role: "status" });
  const button = (label, action) => h("button", { type: "button", dataset: { action }, on: { click: () => act(action) } }, label);
  const controls = {
    pause: button("Pause", "pause"),
    resume: button("Resume", "resume"),
    cancel: button("Cancel", "cancel"),
    complete: button("Complete", "complete"),
  };
  controls.cancel.classList.add("danger");
  const headerBox = h("section.job-head", { "aria-label": "Job status and controls" },
    h("p.status-line", null, "Status: ", statusEl, " · ", flowLink(flow.name), " · stream: ", live),
    times,
    h("div.controls", { role: "group", "aria-label": "Job controls" }, Object.values(controls)),
    actionMsg);

  // error panel
  const errorPanel = h("section.error-panel#error-panel", { "aria-labelledby": "error-title", hidden: true });

  // routine table
  const tbody = h("tbody");
  const routineTable = h("div.table-wrap", { role: "region", "aria-label": "Routine counters", tabindex: "0" },
    h("table#routine-table", null, h("caption", null, "Routines"),
      h("thead", null, h("tr", null, ["Routine", "Status", "Queued", "Running", "Completed", "Errors", "Skipped", "Retries"].map((t) => h("th", { scope: "col" }, t)))),
      tbody));

  // post form
  const routineSel = h("select#post-routine", null, Object.keys(flow.routines).map((r) => h("option", { value: r }, r)));
  const slotSel = h("select#post-slot");
  const fillSlots = () => {
    clear(slotSel);
    for (const sl of flow.routines[routineSel.value]?.slots || []) slotSel.append(h("option", { value: sl }, sl));
  };
  routineSel.addEventListener("change", fillSlots);
  if (flow.entry) routineSel.value = flow.entry.routine;
  fillSlots();
  if (flow.entry) slotSel.value = flow.entry.slot;
  const postData = h("textarea#post-data", { rows: 3, spellcheck: "false" }, "{}");
  const postMsg = h("p.action-msg", { role: "status" });
  const postButton = h("button", { type: "submit" }, "Post payload");
  const postForm = h("form.card.post-form", {
    "aria-labelledby": "post-title",
    on: {
      submit: async (e) => {
        e.preventDefault();
        let data;
        try {
          data = JSON.parse(postData.value || "{}");
          if (data === null || typeof data !== "object" || Array.isArray(data)) throw new Error("the payload must be a JSON object");
        } catch (err) {
          postMsg.textContent = `Payload: ${err.message}`;
          postData.focus();
          return;
        }
        try {
          summary = await api(`/jobs/${encodeURIComponent(id)}/post`, { method: "POST", body: { routine: routineSel.value, slot: slotSel.value, data } });
          postMsg.textContent = `Posted to ${routineSel.value}.${slotSel.value}.`;
          render();
        } catch (err) {
          postMsg.textContent = `Could not post: ${err.message}`;
        }
      },
    },
  },
  h("h2#post-title", null, "Post a payload"),
  h("div.row", null,
    h("div", null, h("label", { for: "post-routine" }, "Routine"), routineSel),
    h("div", null, h("label", { for: "post-slot" }, "Slot"), slotSel)),
  h("label", { for: "post-data" }, "Payload (JSON object)"), postData, postButton, postMsg);

  // timeline
  const timelineList = h("ol.timeline#timeline");
  const timelineInfo = h("p.hint");
  const timeline = h("section.card", { "aria-labelledby": "timeline-title" },
    h("h2#timeline-title", null, "Event timeline"), timelineInfo,
    h("div.timeline-scroll", { tabindex: "0", role: "region", "aria-label": "Event timeline (newest first)" }, timelineList));

  main.append(headerBox, errorPanel, graphRegion(graph.svg, `Graph of job ${id}`), legend(),
    h("div.job-grid", null,
      h("div.job-main", null, routineTable, postForm),
      h("div.job-side", null, timeline)));

  let shownRecords = 0;
  let scheduled = false;
  function render() {
    scheduled = false;
    const status = model.status;
    clear(statusEl).append(statusBadge(status));
    clear(times).append(
      h("dt", null, "Job id"), h("dd.mono", null, id),
      h("dt", null, "Created"), h("dd", null, fmtTime(summary.created_at)),
      h("dt", null, "Started"), h("dd", null, fmtTime(summary.started_at)),
      h("dt", null, "Finished"), h("dd", null, fmtTime(summary.finished_at)));
    const terminal = TERMINAL.has(status);
    controls.pause.disabled = terminal || status === "paused";
    controls.resume.disabled = status !== "paused";
    controls.cancel.disabled = terminal;
    controls.complete.hidden = !summary.keep_open;
    controls.complete.disabled = terminal;
    postButton.disabled = terminal;
    const st = model.statuses();
    graph.update(st);
    clear(tbody);
    for (const [rid, r] of Object.entries(st)) {
      tbody.append(h("tr", { dataset: { routine: rid, status: r.status } },
        h("th", { scope: "row" }, rid), h("td", null, statusBadge(r.status)),
        h("td.num", null, r.queued), h("td.num", null, r.running), h("td.num", null, r.completed),
        h("td.num", null, r.errors), h("td.num", null, r.skipped), h("td.num", null, r.retries)));
    }
    renderErrors(st);
    // newest first; only new rows are added
    const fresh = model.total - shownRecords;
    if (fresh > 0) {
      const recs = model.records.slice(-Math.min(fresh, 300));
      const frag = document.createDocumentFragment();
      for (const rec of recs) {
        const cls = rec.kind.startsWith("activation.failed") || (rec.kind === "job.finished" && rec.status === "failed") ? "bad"
          : rec.kind === "activation.skipped" || rec.kind === "activation.retried" ? "warn" : "";
        frag.prepend(h("li", { class: cls, dataset: { kind: rec.kind } },
          h("span.t", null, `+${(rec.ts - model.startTs).toFixed(3)} s`), " ",
          h("span.kind", null, rec.kind), " ", describe(rec)));
      }
      timelineList.prepend(frag);
      while (timelineList.children.length > 300) timelineList.lastElementChild.remove();
      shownRecords = model.total;
    }
    timelineInfo.textContent = `${model.total} record${model.total === 1 ? "" : "s"}${model.truncated ? " (some were not kept or were dropped; the counters come from the job's metrics)" : ""}; the newest 300 are shown.`;
  }
  function schedule() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(render);
    }
  }

  let traceback = null;
  let shownErrors = "";
  function renderErrors(st) {
    const failed = Object.entries(st).filter(([, r]) => r.lastError);
    const jobFailed = model.status === "failed";
    if (!jobFailed && !failed.length) {
      errorPanel.hidden = true;
      return;
    }
    // rebuilt only when it changes (keeps the focus and the traceback's open state)
    const key = JSON.stringify([jobFailed, summary.error, traceback, failed]);
    if (key === shownErrors) return;
    shownErrors = key;
    clear(errorPanel);
    errorPanel.hidden = false;
    errorPanel.append(h("h2#error-title", null, "Errors"));
    if (jobFailed && (summary.error || model.errorRoutine)) {
      errorPanel.append(h("div.job-error", { role: "alert" },
        h("p", null, h("strong", null, `The job failed in ${summary.error_routine || model.errorRoutine || "?"}: `),
          errorText(summary.error_type, summary.error)),
        traceback ? h("details#traceback", { open: true }, h("summary", null, "Traceback"), h("pre", null, traceback)) : null));
    }
    if (failed.length) {
      errorPanel.append(h("ul.routine-errors", null, failed.map(([rid, r]) => h("li", { dataset: { routine: rid } },
        h("strong", null, rid), ` (${r.lastError.skipped ? "input skipped" : r.lastError.retried ? "retrying" : "failed"}): `,
        errorText(r.lastError.type, r.lastError.message)))));
    }
  }

  async function refresh({ counters = true } = {}) {
    summary = await api(`/jobs/${encodeURIComponent(id)}`);
    if (TERMINAL.has(summary.status)) model.status = summary.status;
    if (summary.error_routine) model.errorRoutine = summary.error_routine;
    // exact once the stream's job.finished was folded in, or when the stream was partial
    if (counters && (model.finished || model.truncated)) {
      model.reconcile(await api(`/jobs/${encodeURIComponent(id)}/metrics`));
    }
    if (summary.status === "failed" && traceback === null) {
      // the full state (with the traceback) only for a failed job: it can be large
      const state = await api(`/jobs/${encodeURIComponent(id)}/state`);
      traceback = state.error_traceback || "";
    }
    schedule();
  }

  async function act(action) {
    actionMsg.textContent = `${action}…`;
    try {
      const res = await api(`/jobs/${encodeURIComponent(id)}/${action}`, { method: "POST" });
      summary = res.job;
      if (model.status !== summary.status) model.status = summary.status;
      actionMsg.textContent = `${action}: ${res.changed ? "done" : "nothing to do"} (job ${res.job.status}).`;
      schedule();
    } catch (err) {
      actionMsg.textContent = `${action} failed: ${err.message}`;
    }
  }

  async function connect() {
    if (closed) return;
    try {
      socket = await openSocket(`/ws/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      live.textContent = `offline (${err.message}); retrying`;
      retryTimer = setTimeout(connect, 2000);
      return;
    }
    if (closed) {
      socket.close();
      return;
    }
    socket.addEventListener("open", () => { live.textContent = "live"; });
    socket.addEventListener("message", (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "snapshot" || msg.type === "records") {
        let finished = false;
        for (const rec of msg.records) {
          if (model.apply(rec) && rec.kind === "job.finished") finished = true;
        }
        if (msg.type === "snapshot" && msg.job) summary = msg.job;
        schedule();
        if (finished || (msg.type === "snapshot" && TERMINAL.has(model.status))) refresh().catch(() => {});
      } else if (msg.type === "error") {
        live.textContent = `error: ${msg.error.message}`;
      }
    });
    socket.addEventListener("close", (ev) => {
      if (closed) return;
      if (TERMINAL.has(model.status)) {
        live.textContent = "ended";
        return;
      }
      live.textContent = `disconnected (${ev.code}); reconnecting`;
      retryTimer = setTimeout(connect, 1000);
    });
  }

  render();
  await refresh({ counters: false });
  await connect();
  // counters are exact from the stream; only when the server trimmed old records do they
  // come from the metrics endpoint instead
  reconcileTimer = setInterval(() => {
    if (model.truncated && !TERMINAL.has(model.status) && !document.hidden) refresh().catch(() => {});
  }, 1000);
  return () => {
    closed = true;
    clearTimeout(retryTimer);
    clearInterval(reconcileTimer);
    if (socket) socket.close(1000);
  };
}

function legend() {
  return h("ul.legend", { "aria-label": "Colours of the routine statuses" },
    ["idle", "queued", "running", "completed", "failed"].map((st) => h("li", null, h("span.swatch", { class: `swatch status-${st}` }), st)));
}

// -- plugins -------------------------------------------------------------------------------

export async function pluginsView(main) {
  main.append(heading("Plugins"));
  const data = await api("/plugins");
  main.append(table("Installed plugins", ["Plugin", "Distribution", "Version", "Registered"],
    data.plugins.map((p) => h("tr", null, h("th", { scope: "row" }, p.name), h("td", null, p.distribution || "—"),
      h("td", null, p.version || "—"),
      h("td", null, Object.entries(p.registered || {}).filter(([, names]) => names.length)
        .map(([kind, names]) => h("div", null, h("span.kind-name", null, `${kind}: `), names.join(", "))))))));
  if (data.broken.length) {
    main.append(h("section.error-panel", { "aria-labelledby": "broken-title" }, h("h2#broken-title", null, "Plugins that failed to load"),
      h("ul", null, data.broken.map((b) => h("li", null, h("strong", null, b.name), ` (${b.distribution || "?"}): ${b.error}`)))));
  }
  main.append(h("h2", null, "Registered types"));
  const grid = h("div.types");
  for (const [kind, names] of Object.entries(data.types)) {
    grid.append(h("section.card", { "aria-label": kind }, h("h3", null, kind.replace(/_/g, " ")),
      names.length ? h("ul", null, names.map((n) => h("li.mono", null, n))) : h("p", null, "none")));
  }
  main.append(grid);
  return () => {};
}

export { clearKey, errorBox, getKey };
