// The Audit tab (tenant administrators): the trail newest first, filters, exports and the chain check.
// Filters are identifiers and times only, so they may travel as query parameters.

import { describe, download, request } from "./api.js";
import { byId, el, say, timeCell } from "./dom.js";

const PAGE_SIZE = 50;

export class AuditPanel {
  constructor() {
    this.form = byId("audit-form");
    this.body = byId("audit-body");
    this.message = byId("audit-message");
    this.verdict = byId("audit-verdict");
    this.cursors = [null];
    this.next = null;
    this.generation = 0;
    this.active = false;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load([null]);
    });
    this.form.addEventListener("reset", () => {
      if (this.active) {
        setTimeout(() => this.load([null])); // after the browser has emptied the fields
      }
    });
    byId("audit-newer").addEventListener("click", () => this.load(this.cursors.slice(0, -1)));
    byId("audit-older").addEventListener("click", () => this.load([...this.cursors, this.next]));
    byId("audit-verify").addEventListener("click", () => this.verify());
    byId("audit-export-jsonl").addEventListener("click", () => this.export("jsonl"));
    byId("audit-export-csv").addEventListener("click", () => this.export("csv"));
  }

  reset() {
    this.active = false;
    this.generation += 1;
    this.form.reset();
    this.body.replaceChildren();
    this.cursors = [null];
    this.next = null;
    this.verdict.hidden = true;
    say(this.message, "");
  }

  activate() {
    this.active = true;
    this.load(this.cursors);
  }

  deactivate() {
    this.active = false;
  }

  filters() {
    const value = (id) => byId(id).value.trim();
    const instant = (id) => (byId(id).value ? new Date(byId(id).value).toISOString() : "");
    return {
      action: value("audit-action"),
      actor_id: value("audit-actor"),
      resource_id: value("audit-resource"),
      since: instant("audit-since"),
      until: instant("audit-until"),
    };
  }

  async load(cursors) {
    const generation = ++this.generation;
    const cursor = cursors[cursors.length - 1];
    try {
      const page = await request("GET", "/v1/audit-logs", { params: { ...this.filters(), limit: PAGE_SIZE, cursor } });
      if (generation !== this.generation) {
        return;
      }
      this.cursors = cursors;
      this.next = page.next_cursor;
      this.body.replaceChildren(...page.items.map(eventRow));
      byId("audit-newer").disabled = cursors.length <= 1;
      byId("audit-older").disabled = !page.next_cursor;
      byId("audit-page").textContent = `Page ${cursors.length}`;
      say(this.message, page.items.length ? "" : "No audit events match these filters.");
    } catch (error) {
      if (generation === this.generation) {
        say(this.message, `The audit trail could not be loaded: ${describe(error)}`, { error: true });
      }
    }
  }

  async export(format) {
    say(this.message, `Exporting ${format.toUpperCase()}…`);
    try {
      const name = await download("/v1/audit-logs/export", { ...this.filters(), format }, `audit.${format}`);
      say(this.message, `Exported ${name}.`);
    } catch (error) {
      say(this.message, `The export failed: ${describe(error)}`, { error: true });
    }
  }

  async verify() {
    this.verdict.hidden = false;
    this.verdict.className = "verdict";
    this.verdict.textContent = "Checking the chain…";
    try {
      const report = await request("GET", "/v1/audit-logs/verify");
      if (report.valid) {
        this.verdict.classList.add("good");
        this.verdict.textContent = `Chain intact: all ${report.checked} events checked, none altered or missing.`;
      } else {
        this.verdict.classList.add("bad");
        this.verdict.textContent =
          `Chain broken at event id ${report.first_broken_id} (${report.checked} events checked): ` +
          "the trail was altered from that event on. Keep the database as it is and escalate.";
      }
    } catch (error) {
      this.verdict.classList.add("unknown");
      this.verdict.textContent = `Could not be checked (this is no verdict on the chain): ${describe(error)}`;
    }
  }
}

function eventRow(event) {
  const resource = [event.resource_type, event.resource_id].filter(Boolean).join(" ");
  return el(
    "tr",
    { attrs: { "data-action": event.action } },
    el("td", { text: event.id }),
    el("td", {}, timeCell(event.created_at)),
    el("th", { text: event.action, attrs: { scope: "row" } }),
    el("td", { className: `outcome ${event.outcome}`, text: event.outcome }),
    el("td", { text: [event.actor_type, event.actor_id].filter(Boolean).join(" ") }),
    el("td", { className: "id", text: resource || "—" }),
    el("td", { className: "id", text: event.request_id || "—" }),
  );
}
