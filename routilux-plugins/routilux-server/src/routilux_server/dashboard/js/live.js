// Live status of a job's routines, folded from its tracking records (the WebSocket stream).

const TIMELINE_KEEP = 2000;

function blank() {
  return { queued: 0, running: 0, completed: 0, errors: 0, skipped: 0, retries: 0, lastError: null };
}

function routineOf(target) {
  const dot = target.lastIndexOf(".");
  return dot < 0 ? target : target.slice(0, dot);
}

export class JobModel {
  constructor(flow, summary) {
    this.flow = flow;
    this.routines = {};
    for (const rid of Object.keys(flow.routines)) this.routines[rid] = blank();
    this.records = [];
    this.total = 0;
    this.lastSeq = 0;
    this.truncated = false;
    this.summary = summary;
    this.status = summary.status;
    this.errorRoutine = summary.error_routine;
    // timeline times are seconds since the job started
    this.startTs = summary.started_at ? Date.parse(summary.started_at) / 1000 : null;
    this.finished = false;
  }

  r(rid) {
    return (this.routines[rid] ||= blank());
  }

  /** Apply one record; false if it was seen already (records are in seq order). */
  apply(rec) {
    if (rec.seq <= this.lastSeq) return false;
    // a gap in seq: the server no longer had the job's first records, or tracking dropped
    // some under load (docs/tracking.md); the stream alone cannot count exactly any more
    if (rec.seq !== this.lastSeq + 1) this.truncated = true;
    this.lastSeq = rec.seq;
    this.total += 1;
    this.records.push(rec);
    if (this.records.length > TIMELINE_KEEP) this.records.splice(0, this.records.length - TIMELINE_KEEP);
    if (this.startTs === null) this.startTs = rec.ts;
    // When the server no longer had the job's first records, the counters come from
    // reconcile() (the metrics endpoint) instead: folding a partial stream would be wrong.
    if (this.truncated && !rec.kind.startsWith("job.")) {
      if (rec.error_type) {  // still worth showing: the routine's latest error
        this.r(rec.routine).lastError = {
          type: rec.error_type, message: rec.error,
          skipped: rec.kind === "activation.skipped", retried: rec.kind === "activation.retried",
        };
      }
      return true;
    }
    switch (rec.kind) {
      case "job.started":
      case "job.resumed":
        this.status = "running";
        break;
      case "job.paused":
        this.status = "paused";
        break;
      case "job.finished":
        this.finished = true;
        this.status = rec.status;
        this.errorRoutine = rec.error_routine;
        break;
      case "payload.enqueued":
      case "payload.emitted":
        for (const t of rec.targets) this.r(routineOf(t)).queued += 1;
        break;
      case "payload.dropped":
        if (rec.reason === "drop_oldest" && rec.routine) this.r(rec.routine).queued -= 1;
        break;
      case "activation.started": {
        const r = this.r(rec.routine);
        r.running += 1;
        if (rec.attempt === 0) {
          for (const n of Object.values(rec.inputs || {})) r.queued -= n;
        }
        break;
      }
      case "activation.finished":
        this.r(rec.routine).running -= 1;
        this.r(rec.routine).completed += 1;
        break;
      case "activation.failed": {
        const r = this.r(rec.routine);
        r.running -= 1;
        r.errors += 1;
        r.lastError = { type: rec.error_type, message: rec.error, stopped: rec.stopped };
        break;
      }
      case "activation.skipped": {
        const r = this.r(rec.routine);
        r.running -= 1;
        r.skipped += 1;
        r.lastError = { type: rec.error_type, message: rec.error, skipped: true };
        break;
      }
      case "activation.retried": {
        const r = this.r(rec.routine);
        r.running -= 1;
        r.retries += 1;
        r.lastError = { type: rec.error_type, message: rec.error, retried: true };
        break;
      }
      default:
        break;
    }
    return true;
  }

  /** Counters from GET /metrics: used once the stream has ended (they then agree
   * with it) and all along for a job whose first records the server no longer had. */
  reconcile(metrics) {
    for (const [rid, m] of Object.entries(metrics.routines || {})) {
      const r = this.r(rid);
      r.completed = m.successes ?? r.completed;
      r.errors = m.errors ?? r.errors;
      r.skipped = m.skipped ?? r.skipped;
      r.retries = m.retries ?? r.retries;
      r.running = (metrics.running || {})[rid] ?? 0;
    }
    const depths = metrics.queue_depths || {};
    for (const rid of Object.keys(this.routines)) this.routines[rid].queued = 0;
    for (const [where, depth] of Object.entries(depths)) this.r(routineOf(where)).queued += depth;
  }

  statusOf(rid) {
    const r = this.r(rid);
    if (r.errors > 0 || rid === this.errorRoutine) return "failed";
    if (r.running > 0) return "running";
    if (r.queued > 0) return "queued";
    if (r.completed || r.skipped || r.retries) return "completed";
    return "idle";
  }

  statuses() {
    const out = {};
    for (const rid of Object.keys(this.routines)) {
      const r = this.routines[rid];
      out[rid] = {
        status: this.statusOf(rid),
        queued: Math.max(0, r.queued),
        running: Math.max(0, r.running),
        completed: r.completed,
        errors: r.errors,
        skipped: r.skipped,
        retries: r.retries,
        lastError: r.lastError,
      };
    }
    return out;
  }
}

/** "Type: message", without repeating the type when the message already starts with it. */
export function errorText(type, message) {
  const text = String(message ?? "");
  if (!type || text.startsWith(`${type}:`)) return text;
  return `${type}: ${text}`;
}

/** One line describing a record for the timeline. */
export function describe(rec) {
  switch (rec.kind) {
    case "job.started": return "job started";
    case "job.paused": return `job paused (${rec.reason})`;
    case "job.resumed": return "job resumed";
    case "job.cancelled": return "job cancelled";
    case "job.finished":
      return `job ${rec.status}${rec.error ? `: ${errorText(rec.error_type, rec.error)}` : ""}`;
    case "activation.started":
      return `${rec.routine} #${rec.activation} started${rec.attempt ? ` (retry ${rec.attempt})` : ""}`;
    case "activation.finished":
      return `${rec.routine} #${rec.activation} finished`;
    case "activation.failed":
      return `${rec.routine} #${rec.activation} failed: ${errorText(rec.error_type, rec.error)}`;
    case "activation.retried":
      return `${rec.routine} #${rec.activation} will retry in ${rec.delay} s: ${errorText(rec.error_type, rec.error)}`;
    case "activation.skipped":
      return `${rec.routine} #${rec.activation} skipped its input: ${errorText(rec.error_type, rec.error)}`;
    case "payload.emitted":
      return `${rec.routine}.${rec.event} → ${rec.targets.join(", ") || "(no target)"}`;
    case "payload.enqueued":
      return `${rec.source} payload → ${rec.targets.join(", ")}`;
    case "payload.dropped":
      return `payload dropped (${rec.reason}) at ${rec.routine}${rec.slot ? `.${rec.slot}` : ""}`;
    case "queue.depth":
      return `${rec.routine}.${rec.slot} queue depth ${rec.depth}/${rec.capacity}`;
    default:
      return rec.kind;
  }
}
