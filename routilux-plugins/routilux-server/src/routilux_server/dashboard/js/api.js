// The REST API and the WebSocket, with the user's API key (same auth as any client).

const KEY_ITEM = "routilux.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let onAuthFailure = () => {};

/** Called when the server refuses the key (401/403 on credentials). */
export function setAuthFailureHandler(fn) {
  onAuthFailure = fn;
}

const AUTH_CODES = new Set(["missing_credentials", "invalid_api_key", "invalid_token"]);

export async function api(path, { method = "GET", body, query, key } = {}) {
  const apiKey = key ?? getKey();
  if (!apiKey) {
    onAuthFailure("Log in with an API key.");
    throw new ApiError(401, "missing_credentials", "log in with an API key");
  }
  let url = `/api${path}`;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    }
    if ([...q].length) url += `?${q}`;
  }
  const headers = { "X-API-Key": apiKey, Accept: "application/json" };
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body: payload, cache: "no-store", credentials: "omit" });
  } catch (err) {
    throw new ApiError(0, "network", `the server did not answer (${err.message})`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(res.status, e.code || `http_${res.status}`, e.message || res.statusText, e.details);
    if ((res.status === 401 || res.status === 403) && AUTH_CODES.has(err.code) && key === undefined) {
      onAuthFailure(`The server refused the API key: ${err.message}`);
    }
    throw err;
  }
  return data;
}

/** A WebSocket on /api<path>, authenticated with a short-lived token offered as a
 * subprotocol (never the key in the URL). */
export async function openSocket(path) {
  const { token } = await api("/auth/token", { method: "POST" });
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return new WebSocket(`${scheme}//${location.host}/api${path}`, ["routilux.v1", `routilux.token.${token}`]);
}
