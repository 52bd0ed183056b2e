// The Tenants tab (platform administrators): list, create, suspend and resume tenants. On a development
// server, each tenant also offers "Sign in as its administrator", the quick start from an empty vault.

import { describe, request, session } from "./api.js";
import { byId, el, say, timeCell } from "./dom.js";

const PAGE_SIZE = 50;

export class TenantsPanel {
  /** `signInAs(tenant)`: switch this tab's session to a development token for that tenant's administrator. */
  constructor(signInAs) {
    this.signInAs = signInAs;
    this.body = byId("tenants-body");
    this.message = byId("tenants-message");
    this.createMessage = byId("tenant-create-message");
    this.filter = byId("tenant-status-filter");
    this.more = byId("tenants-more");
    this.rows = new Map();
    this.created = new Map(); // created here: kept on top even when a list answer predates them
    this.next = null;
    this.generation = 0;
    byId("tenant-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    this.filter.addEventListener("change", () => this.load(false));
    byId("tenants-refresh").addEventListener("click", () => this.load(false));
    this.more.addEventListener("click", () => this.load(true));
  }

  reset() {
    this.generation += 1;
    this.body.replaceChildren();
    this.rows.clear();
    this.created.clear();
    this.next = null;
    this.more.hidden = true;
    say(this.message, "");
    say(this.createMessage, "");
  }

  activate() {
    this.load(false);
  }

  deactivate() {}

  async load(append) {
    const generation = ++this.generation;
    const cursor = append ? this.next : null;
    try {
      const page = await request("GET", "/v1/tenants", { params: { status: this.filter.value, limit: PAGE_SIZE, cursor } });
      if (generation !== this.generation) {
        return;
      }
      if (!append) {
        this.body.replaceChildren();
        this.rows.clear();
      }
      for (const tenant of page.items) {
        this.show(tenant, false);
      }
      for (const tenant of this.created.values()) {
        if (!this.rows.has(tenant.id)) {
          this.show(tenant, true);
        }
      }
      this.next = page.next_cursor;
      this.more.hidden = !page.next_cursor;
      say(this.message, this.rows.size ? "" : "No tenants to show.");
    } catch (error) {
      if (generation === this.generation) {
        say(this.message, `The tenant list could not be loaded: ${describe(error)}`, { error: true });
      }
    }
  }

  show(tenant, first) {
    const row = this.rows.get(tenant.id) || this.createRow(tenant);
    this.rows.set(tenant.id, row);
    row.cells[0].textContent = tenant.name;
    row.cells[1].replaceChildren(el("span", { className: `badge ${tenant.status}`, text: tenant.status }));
    const toggle = row.querySelector("button[data-toggle]");
    const target = tenant.status === "active" ? "suspended" : "active";
    toggle.dataset.toggle = target;
    toggle.textContent = target === "suspended" ? "Suspend" : "Resume";
    toggle.setAttribute("aria-label", `${toggle.textContent} ${tenant.name}`);
    if (!row.isConnected) {
      if (first) {
        this.body.prepend(row);
      } else {
        this.body.append(row);
      }
    }
  }

  createRow(tenant) {
    const actions = el(
      "td",
      { className: "actions" },
      el("button", {
        className: "secondary",
        attrs: { type: "button", "data-toggle": "" },
        on: { click: (event) => this.setStatus(tenant, event.currentTarget.dataset.toggle) },
      }),
    );
    if (session.development) {
      actions.append(
        el("button", {
          text: "Sign in as its administrator",
          attrs: { type: "button", "aria-label": `Sign in as administrator of ${tenant.name}` },
          on: { click: () => this.signInAs(tenant) },
        }),
      );
    }
    return el(
      "tr",
      { attrs: { "data-tenant-id": tenant.id } },
      el("th", { attrs: { scope: "row" } }),
      el("td"),
      el("td", { className: "id", text: tenant.id }),
      el("td", {}, timeCell(tenant.created_at)),
      actions,
    );
  }

  async create() {
    const input = byId("tenant-name");
    const name = input.value.trim();
    if (!name) {
      say(this.createMessage, "Give the tenant a name first.", { error: true });
      input.focus();
      return;
    }
    try {
      const tenant = await request("POST", "/v1/tenants", { json: { name } });
      input.value = "";
      this.created.set(tenant.id, tenant);
      this.show(tenant, true);
      say(this.createMessage, `Tenant ${tenant.name} created (id ${tenant.id}).`);
    } catch (error) {
      say(this.createMessage, `The tenant could not be created: ${describe(error)}`, { error: true });
    }
  }

  async setStatus(tenant, status) {
    try {
      const updated = await request("PATCH", `/v1/tenants/${encodeURIComponent(tenant.id)}`, { json: { status } });
      if (this.created.has(updated.id)) {
        this.created.set(updated.id, updated);
      }
      this.show(updated, false);
      say(this.message, `Tenant ${updated.name} is now ${updated.status}.`);
    } catch (error) {
      say(this.message, `Tenant ${tenant.name} could not be changed: ${describe(error)}`, { error: true });
    }
  }
}
