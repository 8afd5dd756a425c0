// The one module that talks to the Gomail API (JSON, Django session + CSRF). Every failure
// becomes an ApiError whose `errors` has the API's shape: {base} or {<field>}.
//
// By default the API is on the page's own origin. A build for a UI served elsewhere names
// the API's origin in VITE_API_BASE (e.g. https://mail.example.org); the API must list the
// UI's origin in api.cors_allowed_origins.

export const NETWORK_ERROR = "Network error: could not reach the server";

export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.base || Object.values(errors)[0] || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status; // 0: the server was not reached
    this.errors = errors;
  }
}

export function apiBase() {
  return (import.meta.env.VITE_API_BASE || "").replace(/\/+$/, "");
}

function cookieToken() {
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : null;
}

// A page on another origin cannot read the API's cookie: it asks GET /session/csrf. The
// request itself is kept, so that calls made together share one token; it is asked again
// after signing in (Django rotates the token then) and after a CSRF refusal.
let tokenRequest = null;

export function forgetCsrfToken() {
  tokenRequest = null;
}

async function csrfToken() {
  const cookie = apiBase() ? null : cookieToken();
  if (cookie) return cookie;
  tokenRequest ??= request("GET", "/session/csrf").then((data) => data.csrfToken);
  try {
    return await tokenRequest;
  } catch (error) {
    tokenRequest = null; // a failed request is not a token: ask again next time
    throw error;
  }
}

// Django's CSRF refusal ("CSRF Failed: ..."), as opposed to any other 403.
const isCsrfRefusal = (status, errors) => status === 403 && /^CSRF/.test(errors.base || "");

// The API sends one message per field; be lenient with lists and other values anyway.
function errorsOf(data, status) {
  const errors = data && typeof data === "object" ? data.errors : null;
  if (!errors || typeof errors !== "object" || Object.keys(errors).length === 0) {
    return { base: `Unexpected answer from the server (HTTP ${status})` };
  }
  return Object.fromEntries(
    Object.entries(errors).map(([key, value]) => [
      key,
      Array.isArray(value) ? value.join(" ") : String(value),
    ]),
  );
}

export async function request(method, path, body, { retried = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = await csrfToken();
  const base = apiBase();
  let response;
  try {
    response = await fetch(base + path, {
      method,
      headers,
      // The session cookie goes to the API's origin too when that is another one.
      credentials: base ? "include" : "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { base: NETWORK_ERROR });
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): handled below by status.
  }
  if (response.ok) return data;
  const errors = errorsOf(data, response.status);
  if (method !== "GET" && !retried && isCsrfRefusal(response.status, errors)) {
    // The token went stale (another tab signed in, say): nothing was done, so once more
    // with a fresh one.
    forgetCsrfToken();
    return request(method, path, body, { retried: true });
  }
  throw new ApiError(response.status, errors);
}

export const getSession = () => request("GET", "/session");

export async function signIn(username, password) {
  const user = await request("POST", "/session", { username, password });
  forgetCsrfToken(); // Django rotates the token when it signs someone in
  return user;
}

export const signOut = () => request("DELETE", "/session");

export const sendEmail = (email) => request("POST", "/email/send", { email });
export const getEmail = (messageId) => request("GET", `/email/${encodeURIComponent(messageId)}`);
export const getEmailLimits = () => request("GET", "/email/limits");

export function getRecentEmails({ status = "", limit = 50 } = {}) {
  const query = new URLSearchParams(status ? { status, limit } : { limit });
  return request("GET", `/email/recent?${query}`);
}

export const getProviders = () => request("GET", "/providers");

// For createAsyncThunk: an ApiError becomes a serialisable rejected value {status, errors}.
export function apiThunk(call) {
  return async (arg, thunkApi) => {
    try {
      return await call(arg, thunkApi);
    } catch (error) {
      if (error instanceof ApiError) {
        return thunkApi.rejectWithValue({ status: error.status, errors: error.errors });
      }
      throw error;
    }
  };
}

// The errors of a rejected thunk action, whether the API or the code failed.
export function errorsOfAction(action) {
  return action.payload?.errors ?? { base: action.error?.message || "Something went wrong" };
}
