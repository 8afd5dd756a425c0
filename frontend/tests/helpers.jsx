// Test doubles at the network boundary: a stubbed global fetch answering like the Django API.
import { render } from "@testing-library/react";
import { Provider } from "react-redux";
import { vi } from "vitest";
import { makeStore } from "../src/store.js";

export function clearCsrfCookie() {
  document.cookie = "csrftoken=; expires=Thu, 01 Jan 1970 00:00:00 GMT";
}

export function json(status, body) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

/**
 * Stub fetch with `handler(method, path, body)`, which returns a Response, a promise of one,
 * or throws (a network failure). Returns the mock; `calls(mock)` lists what was asked.
 */
export function stubFetch(handler) {
  const mock = vi.fn(async (path, init = {}) => {
    const method = init.method || "GET";
    const body = init.body ? JSON.parse(init.body) : undefined;
    return handler(method, path, body, init);
  });
  vi.stubGlobal("fetch", mock);
  return mock;
}

export const calls = (mock) => mock.mock.calls.map(([path, init = {}]) => `${init.method || "GET"} ${path}`);

// A promise with its resolve handle, to hold an answer back.
export function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

export const USER = { username: "ada", isStaff: false };

export const signedIn = (extra = {}) => ({
  session: { status: "signedIn", user: USER, pending: false, errors: {}, signOutError: null },
  ...extra,
});

export function renderWithStore(ui, preloadedState) {
  const store = makeStore(preloadedState);
  return { store, ...render(<Provider store={store}>{ui}</Provider>) };
}

export function email(status, extra = {}) {
  return {
    messageId: "8b1c4f2e-7f53-4b83-9d35-5a4b8e0f2c11",
    status,
    provider: status === "queued" ? "" : "ses",
    attempts: status === "queued" ? 0 : 1,
    lastError: "",
    acceptedAt: "2026-11-30T07:00:00Z",
    sentAt: status === "sent" ? "2026-11-30T07:00:03Z" : null,
    ...extra,
  };
}

// The answer of GET /email/limits in tests: small, so that files go over them easily.
export const LIMITS = {
  maxRecipients: 50,
  maxAttachments: 3,
  maxAttachmentBytes: 1000,
  maxAttachmentsBytes: 2500,
  deniedContentTypes: ["application/x-msdownload"],
  deniedExtensions: ["exe", "bat"],
  maxTags: 10,
  maxTagLength: 64,
};
