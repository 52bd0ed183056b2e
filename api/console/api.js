// Talking to the API from the console: the session's token, requests, uploads, downloads, errors in words.
//
// The token lives in sessionStorage (this tab only) and travels in the Authorization header only: never in a
// web address, so it cannot leak through history, logs or the Referer header. Anything that could be PHI
// (search text, file names) travels in request bodies, never in query strings.

const TOKEN_KEY = "phivault.token";
const DEV_KEY = "phivault.development";

let onUnauthorized = () => {};

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  /** The token came from this server's development sign-in, so the server can mint more. */
  get development() {
    return sessionStorage.getItem(DEV_KEY) === "yes";
  },
  start(token, development) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(DEV_KEY, development ? "yes" : "no");
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(DEV_KEY);
  },
};

/** Called with the error when the server refuses the session's token (401). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** The claims a token carries, read (not verified: the server verifies) to show who is signed in. */
export function readClaims(token) {
  const parts = token.split(".");
  if (parts.length !== 3) {
    return null;
  }
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

export class ApiError extends Error {
  constructor(status, code, message, requestId = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  /** One sentence for a person, with the code and request id support would ask for. */
  describe() {
    const text = this.message.charAt(0).toUpperCase() + this.message.slice(1);
    const details = [this.code && `code ${this.code}`, this.requestId && `request ${this.requestId}`].filter(Boolean);
    return details.length ? `${text} (${details.join(", ")}).` : `${text}.`;
  }
}

/** A thrown value as words: the API's own message when it gave one. */
export function describe(error) {
  return error instanceof ApiError ? error.describe() : "Something went wrong in the console; reload the page.";
}

const UNREACHABLE = "the server could not be reached; check that PHIVault is running, then try again";

function errorFrom(status, statusText, body, requestId) {
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error.message === "string") {
    return new ApiError(status, String(error.code || ""), error.message, error.request_id || requestId);
  }
  return new ApiError(status, "", `the server answered ${status} ${statusText}`.trim(), requestId);
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function refused(error) {
  if (error.status === 401) {
    onUnauthorized(error);
  }
  return error;
}

/** `path` with its query parameters; only ids, statuses, times and page cursors are ever passed here. */
export function address(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      query.set(name, String(value));
    }
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  if (session.token) {
    result.Authorization = `Bearer ${session.token}`;
  }
  return result;
}

async function send(method, path, { json, params } = {}) {
  const init = { method, headers: headers(), cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  try {
    return await fetch(address(path, params), init);
  } catch {
    throw new ApiError(0, "network_error", UNREACHABLE);
  }
}

/** A JSON request; resolves to the parsed body (null for 204), rejects with an ApiError. */
export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  const body = parseJson(await response.text());
  if (!response.ok) {
    throw refused(errorFrom(response.status, response.statusText, body, response.headers.get("x-request-id")));
  }
  return body;
}

function attachmentName(response, fallback) {
  const disposition = response.headers.get("content-disposition") || "";
  const encoded = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (encoded) {
    try {
      return decodeURIComponent(encoded[1]);
    } catch {
      return fallback;
    }
  }
  const plain = /filename="([^"]+)"/i.exec(disposition);
  return plain ? plain[1] : fallback;
}

/** Fetch a file with the token in its header and hand it to the browser as a download (never a tokened link). */
export async function download(path, params, fallbackName) {
  const response = await send("GET", path, { params });
  if (!response.ok) {
    const body = parseJson(await response.text());
    throw refused(errorFrom(response.status, response.statusText, body, response.headers.get("x-request-id")));
  }
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = attachmentName(response, fallbackName);
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return link.download;
}

/** Upload one file as `POST /v1/documents` (multipart); XMLHttpRequest, for its upload progress events. */
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/documents");
    for (const [name, value] of Object.entries(headers())) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        onProgress(event.loaded / event.total);
      }
    });
    xhr.addEventListener("load", () => {
      const body = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        resolve({ document: body, duplicate: xhr.status === 200 && body.duplicate === true });
      } else {
        reject(refused(errorFrom(xhr.status, xhr.statusText, body, xhr.getResponseHeader("x-request-id"))));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network_error", UNREACHABLE)));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "the upload was cancelled")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}
