// The Documents tab: uploads with a progress bar each, and a live list of the tenant's documents.
//
// The list is polled every 2 seconds while a document is on its way (queued or processing, or an upload
// in flight) and every 10 seconds otherwise, only while the tab is open and the browser tab visible:
// every list request is an audit event, so the console does not ask more often than a person needs.
// Rows are updated in place, so a focused button keeps its focus while the list refreshes.

import { describe, download, request, upload } from "./api.js";
import { byId, el, formatBytes, say, timeCell } from "./dom.js";

const BUSY_POLL_MS = 2000;
const IDLE_POLL_MS = 10000;
const PAGE_SIZE = 100;
const UNSETTLED = new Set(["queued", "processing"]);

export class DocumentsPanel {
  constructor() {
    this.body = byId("documents-body");
    this.message = byId("documents-message");
    this.live = byId("documents-live");
    this.filter = byId("status-filter");
    this.uploads = byId("uploads");
    this.rows = new Map();
    this.deleted = new Map();
    this.inFlight = 0;
    this.timer = null;
    this.active = false;
    this.canWrite = false;
    this.generation = 0;

    const dropZone = byId("drop-zone");
    const input = byId("file-input");
    input.addEventListener("change", () => {
      this.uploadAll(input.files);
      input.value = "";
    });
    dropZone.addEventListener("dragover", (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
    dropZone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropZone.classList.remove("dragging");
      this.uploadAll(event.dataTransfer ? event.dataTransfer.files : []);
    });
    this.filter.addEventListener("change", () => this.refresh());
    byId("documents-refresh").addEventListener("click", () => this.refresh());
    document.addEventListener("visibilitychange", () => {
      if (this.active && document.visibilityState === "visible") {
        this.refresh();
      }
    });
  }

  /** A new identity: forget everything shown for the previous one. */
  reset(identity) {
    this.stop();
    this.generation += 1;
    this.canWrite = identity.role === "admin" || identity.role === "member";
    byId("upload-area").hidden = !this.canWrite;
    this.body.replaceChildren();
    this.rows.clear();
    this.deleted.clear();
    this.uploads.replaceChildren();
    this.renderDeleted();
    say(this.message, "");
  }

  activate() {
    this.active = true;
    this.refresh();
  }

  deactivate() {
    this.active = false;
    this.stop();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  schedule(items) {
    this.stop();
    if (!this.active || document.visibilityState !== "visible") {
      return;
    }
    const busy = this.inFlight > 0 || items.some((item) => UNSETTLED.has(item.status));
    this.timer = setTimeout(() => this.refresh(), busy ? BUSY_POLL_MS : IDLE_POLL_MS);
  }

  async refresh() {
    this.stop();
    const generation = this.generation;
    let items = [];
    try {
      const page = await request("GET", "/v1/documents", { params: { status: this.filter.value, limit: PAGE_SIZE } });
      if (generation !== this.generation) {
        return;
      }
      items = page.items;
      this.render(items);
      byId("documents-more").hidden = !page.next_cursor;
      byId("documents-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      if (this.message.classList.contains("error")) {
        say(this.message, "");
      }
    } catch (error) {
      if (generation !== this.generation) {
        return;
      }
      say(this.message, `The document list could not be loaded: ${describe(error)}`, { error: true });
    }
    this.schedule(items);
  }

  render(items) {
    const seen = new Set();
    items.forEach((item, index) => {
      seen.add(item.id);
      let row = this.rows.get(item.id);
      if (!row) {
        row = this.createRow(item);
        this.rows.set(item.id, row);
      }
      this.updateRow(row, item);
      if (this.body.children[index] !== row) {
        this.body.insertBefore(row, this.body.children[index] || null);
      }
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    byId("documents-empty").hidden = items.length > 0;
  }

  createRow(item) {
    const row = el("tr", { attrs: { "data-document-id": item.id } });
    const actions = el("td", { className: "actions" });
    if (this.canWrite) {
      actions.append(
        el("button", {
          className: "secondary",
          text: "Download",
          attrs: { type: "button", "aria-label": `Download ${item.filename}` },
          on: { click: () => this.download(item.id, item.filename) },
        }),
        el("button", {
          className: "danger",
          text: "Delete",
          attrs: { type: "button", "aria-label": `Delete ${item.filename}` },
          on: { click: () => this.remove(item) },
        }),
      );
    }
    row.append(
      el("th", { text: item.filename, attrs: { scope: "row" } }),
      el("td", { className: "status" }),
      el("td", { text: formatBytes(item.size_bytes) }),
      el("td", {}, timeCell(item.created_at)),
      actions,
    );
    return row;
  }

  updateRow(row, item) {
    const progress = item.progress || null;
    const key = JSON.stringify([item.status, progress, item.error_message, item.chunk_count]);
    if (row.dataset.key === key) {
      return;
    }
    const announce = row.dataset.key !== undefined && !UNSETTLED.has(item.status);
    row.dataset.key = key;
    row.dataset.status = item.status;
    row.cells[1].replaceChildren(...statusNodes(item, progress));
    if (announce) {
      this.live.textContent = `${item.filename}: ${item.status}`;
    }
  }

  async download(id, filename) {
    try {
      await download(`/v1/documents/${encodeURIComponent(id)}/content`, {}, filename);
      say(this.message, `${filename} downloaded.`);
    } catch (error) {
      say(this.message, `${filename} could not be downloaded: ${describe(error)}`, { error: true });
    }
  }

  async remove(item) {
    try {
      await request("DELETE", `/v1/documents/${encodeURIComponent(item.id)}`);
      this.deleted.set(item.id, item);
      this.renderDeleted();
      say(this.message, `${item.filename} deleted: it no longer appears in search. You can restore it below.`);
      byId("documents-refresh").focus();
    } catch (error) {
      say(this.message, `${item.filename} could not be deleted: ${describe(error)}`, { error: true });
    }
    this.refresh();
  }

  async restore(item) {
    try {
      await request("POST", `/v1/documents/${encodeURIComponent(item.id)}/restore`);
      this.deleted.delete(item.id);
      this.renderDeleted();
      say(this.message, `${item.filename} restored.`);
      byId("documents-refresh").focus();
    } catch (error) {
      say(this.message, `${item.filename} could not be restored: ${describe(error)}`, { error: true });
    }
    this.refresh();
  }

  renderDeleted() {
    const list = byId("deleted-list");
    list.replaceChildren(
      ...[...this.deleted.values()].map((item) =>
        el(
          "li",
          {},
          el("span", { text: item.filename }),
          el("button", {
            className: "secondary",
            text: "Restore",
            attrs: { type: "button", "aria-label": `Restore ${item.filename}` },
            on: { click: () => this.restore(item) },
          }),
        ),
      ),
    );
    byId("deleted-area").hidden = this.deleted.size === 0;
  }

  uploadAll(files) {
    for (const file of Array.from(files)) {
      this.uploadOne(file);
    }
  }

  async uploadOne(file) {
    const generation = this.generation;
    const bar = el("progress", { attrs: { max: "100", value: "0", "aria-label": `Uploading ${file.name}` } });
    const state = el("span", { className: "upload-state", text: "Uploading…" });
    const item = el("li", { attrs: { "data-upload": file.name } }, el("span", { text: file.name }), bar, state);
    this.uploads.prepend(item);
    this.inFlight += 1;
    try {
      const { duplicate } = await upload(file, (share) => {
        bar.value = Math.round(share * 100);
      });
      bar.value = 100;
      state.textContent = duplicate
        ? "Already stored: the same content was uploaded before."
        : "Uploaded; queued for processing.";
      item.dataset.outcome = duplicate ? "duplicate" : "uploaded";
    } catch (error) {
      state.textContent = `Not uploaded: ${describe(error)}`;
      state.classList.add("error");
      item.dataset.outcome = "failed";
    } finally {
      this.inFlight -= 1;
    }
    if (this.active && generation === this.generation) {
      this.refresh();
    }
  }
}

function statusNodes(item, progress) {
  const badge = el("span", { className: `badge ${item.status}`, text: item.status });
  if (item.status === "processing" && progress && progress.chunks_total > 0) {
    const { chunks_embedded: done, chunks_total: total } = progress;
    return [
      badge,
      el("progress", { attrs: { max: String(total), value: String(done), "aria-label": `${item.filename}: processing` } }),
      el("span", { className: "detail", text: `${done} of ${total} chunks embedded` }),
    ];
  }
  if (item.status === "ready") {
    const chunks = `${item.chunk_count} ${item.chunk_count === 1 ? "passage" : "passages"} searchable`;
    return [badge, el("span", { className: "detail", text: chunks })];
  }
  if (item.status === "failed") {
    const reason = item.error_message || item.error_code || "no reason was recorded";
    return [badge, el("span", { className: "detail error", text: reason })];
  }
  return [badge];
}
