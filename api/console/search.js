// The Search tab: the query travels in a POST body (never in the address); results show the matched text
// with the query's words marked.

import { describe, request } from "./api.js";
import { byId, el, highlighted, say } from "./dom.js";

export class SearchPanel {
  constructor() {
    this.form = byId("search-form");
    this.query = byId("search-query");
    this.k = byId("search-k");
    this.results = byId("search-results");
    this.message = byId("search-message");
    this.generation = 0;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.search();
    });
  }

  reset() {
    this.generation += 1;
    this.query.value = "";
    this.results.replaceChildren();
    say(this.message, "");
  }

  activate() {}

  deactivate() {}

  async search() {
    const query = this.query.value.trim();
    if (!query) {
      say(this.message, "Type what you are looking for first.", { error: true });
      this.query.focus();
      return;
    }
    const k = Number.parseInt(this.k.value, 10);
    if (!Number.isInteger(k) || k < 1 || k > 100) {
      say(this.message, "Results must be a whole number from 1 to 100.", { error: true });
      this.k.focus();
      return;
    }
    const mode = this.form.elements.mode.value;
    const generation = ++this.generation;
    say(this.message, "Searching…");
    try {
      const answer = await request("POST", "/v1/search", { json: { query, k, mode } });
      if (generation !== this.generation) {
        return;
      }
      this.results.replaceChildren(...answer.results.map((result) => resultItem(result, query)));
      const count = answer.results.length;
      say(
        this.message,
        count === 0
          ? "No results: nothing in your documents is close enough to that."
          : `${count} result${count === 1 ? "" : "s"} (${mode}, ${Math.round(answer.took_ms)} ms).`,
      );
    } catch (error) {
      if (generation === this.generation) {
        this.results.replaceChildren();
        say(this.message, `The search failed: ${describe(error)}`, { error: true });
      }
    }
  }
}

function resultItem(result, query) {
  const where = [result.page !== null && result.page !== undefined ? `page ${result.page}` : null, `passage ${result.chunk_index + 1}`]
    .filter(Boolean)
    .join(", ");
  return el(
    "li",
    { className: "result", attrs: { "data-document-id": result.document_id } },
    el(
      "p",
      { className: "result-head" },
      el("strong", { className: "result-file", text: result.filename }),
      el("span", { className: "detail", text: where }),
      el("span", { className: "score", text: `score ${result.score.toFixed(3)}` }),
    ),
    el("p", { className: "result-text" }, highlighted(result.text, query)),
  );
}
