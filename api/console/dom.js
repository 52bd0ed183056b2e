// Building the page from data. Everything the API returns may be PHI written by anyone, so it only ever
// becomes text nodes (textContent, append of strings): never HTML.

/** An element: `el("td", {className: "x", text: "y", attrs: {"aria-label": "z"}, on: {click}}, ...children)`. */
export function el(tag, { className, text, attrs = {}, on = {} } = {}, ...children) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const [event, handler] of Object.entries(on)) {
    node.addEventListener(event, handler);
  }
  node.append(...children);
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) {
    throw new Error(`the page has no #${id}`);
  }
  return node;
}

/** A status line: plain words, marked as an error or not (the colour is never the only sign: errors say so). */
export function say(node, message, { error = false } = {}) {
  node.textContent = message || "";
  node.classList.toggle("error", Boolean(message) && error);
}

/** The query's words (letters and digits, two or more), longest first, so a longer word wins an overlap. */
export function queryTerms(query) {
  const terms = new Set();
  for (const match of query.toLocaleLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) {
    if (match[0].length >= 2) {
      terms.add(match[0]);
    }
  }
  return [...terms].sort((a, b) => b.length - a.length);
}

/** `text` with each occurrence of the query's words in a <mark>, as text nodes and elements only. */
export function highlighted(text, query) {
  const fragment = document.createDocumentFragment();
  const terms = queryTerms(query);
  if (terms.length === 0) {
    fragment.append(text);
    return fragment;
  }
  // The terms are letters and digits only, so they carry no regular-expression syntax.
  const pattern = new RegExp(terms.join("|"), "giu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) {
      fragment.append(text.slice(last, match.index));
    }
    fragment.append(el("mark", { text: match[0] }));
    last = match.index + match[0].length;
  }
  if (last < text.length) {
    fragment.append(text.slice(last));
  }
  return fragment;
}

export function formatBytes(bytes) {
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : DATE_TIME.format(date);
}

/** A time element showing local time, with the exact instant in its datetime attribute. */
export function timeCell(iso) {
  return el("time", { text: formatTime(iso), attrs: { datetime: iso } });
}
