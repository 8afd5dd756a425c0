import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { NETWORK_ERROR } from "../src/api.js";
import { fetchProviders } from "../src/features/providers.js";
import { fetchRecent, filterChanged } from "../src/features/recent.js";
import { fieldChanged, recipientChanged, selectSendErrors, sendEmail } from "../src/features/send.js";
import { loadSession, SESSION_ENDED, signIn, signOut } from "../src/features/session.js";
import { followEmail, stopFollowing } from "../src/features/status.js";
import { makeStore } from "../src/store.js";
import { calls, deferred, email, json, signedIn, stubFetch, USER } from "./helpers.jsx";

const FIELDS = {
  fromName: "Ada",
  fromEmail: "ada@example.com",
  toName: "Bob",
  toEmail: "bob@example.com",
  subject: "Hi",
  body: "Hello",
};

// A store whose send form is filled in with FIELDS (the To name and email: its one To row).
function filledStore() {
  const store = makeStore(signedIn());
  const toRow = store.getState().send.recipients.to[0].id;
  for (const [name, value] of Object.entries(FIELDS)) {
    if (name === "toName" || name === "toEmail") {
      store.dispatch(recipientChanged({ kind: "to", id: toRow, part: name.slice(2).toLowerCase(), value }));
    } else {
      store.dispatch(fieldChanged({ name, value }));
    }
  }
  return store;
}

const toRowOf = (store) => store.getState().send.recipients.to[0].id;

describe("send slice", () => {
  it("maps a 422's errors to their fields, with no banner", async () => {
    stubFetch(() =>
      json(422, {
        errors: {
          fromEmail: "From email is not a valid email",
          toEmail: "To email is required",
          body: "Body is required",
        },
      }),
    );
    const store = filledStore();
    await store.dispatch(sendEmail());
    expect(store.getState().send.sending).toBe(false);
    // toEmail is the one To row's email.
    expect(selectSendErrors(store.getState())).toEqual({
      at: {
        fromEmail: "From email is not a valid email",
        [`${toRowOf(store)}.email`]: "To email is required",
        body: "Body is required",
      },
      banner: null,
    });
  });

  it.each([
    [400, "Could not decode JSON body"],
    [403, "CSRF Failed: CSRF token missing."],
    [503, "Service unavailable"],
  ])("shows a %i's base error in the banner", async (status, message) => {
    stubFetch(() => json(status, { errors: { base: message } }));
    const store = filledStore();
    await store.dispatch(sendEmail());
    expect(selectSendErrors(store.getState())).toEqual({ at: {}, banner: message });
    expect(store.getState().send.messageId).toBeNull();
  });

  it("shows a network failure in the banner", async () => {
    stubFetch(() => Promise.reject(new TypeError("Failed to fetch")));
    const store = filledStore();
    await store.dispatch(sendEmail());
    expect(selectSendErrors(store.getState()).banner).toBe(NETWORK_ERROR);
  });

  it("puts an error about a field the form does not show in the banner", async () => {
    stubFetch(() => json(422, { errors: { replyTo: "Reply to is not a valid email" } }));
    const store = filledStore();
    await store.dispatch(sendEmail());
    expect(selectSendErrors(store.getState()).banner).toBe("Reply to is not a valid email");
  });

  it("is sending while the request is in flight, then stores the message id", async () => {
    const answer = deferred();
    const fetch = stubFetch(() => answer.promise);
    const store = filledStore();
    const done = store.dispatch(sendEmail());
    expect(store.getState().send.sending).toBe(true);
    // A second submit while sending is not sent.
    store.dispatch(sendEmail());
    await vi.waitFor(() => expect(fetch).toHaveBeenCalled());
    answer.resolve(json(200, { messageId: "m-42" }));
    await done;
    expect(fetch).toHaveBeenCalledTimes(1);
    const { send } = store.getState();
    expect(send.sending).toBe(false);
    expect(send.messageId).toBe("m-42");
    expect(send.errors).toEqual({});
    // One To recipient and nothing else new: the original format, exactly.
    expect(JSON.parse(fetch.mock.calls[0][1].body)).toEqual({ email: FIELDS });
    // The sender stays for the next email; the rest is cleared.
    expect(send.fields).toEqual({ fromName: "Ada", fromEmail: "ada@example.com", subject: "", body: "", html: "", tags: "" });
    expect(send.recipients).toEqual({ to: [{ id: expect.any(String), email: "", name: "" }], cc: [], bcc: [] });
  });

  it("clears a field's error when the field changes", async () => {
    stubFetch(() => json(422, { errors: { toEmail: "To email is required", body: "Body is required" } }));
    const store = filledStore();
    await store.dispatch(sendEmail());
    store.dispatch(recipientChanged({ kind: "to", id: toRowOf(store), part: "email", value: "bob@example.com" }));
    expect(selectSendErrors(store.getState()).at).toEqual({ body: "Body is required" });
  });
});

describe("status polling", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("polls every second and stops once the status is final", async () => {
    const answers = [email("queued"), email("sending"), email("sent")];
    const fetch = stubFetch(() => json(200, answers.length > 1 ? answers.shift() : answers[0]));
    const store = makeStore(signedIn());
    const id = email("queued").messageId;
    const loop = store.dispatch(followEmail(id));

    await vi.advanceTimersByTimeAsync(0);
    expect(store.getState().status.byId[id].email.status).toBe("queued");
    expect(store.getState().status.following[id]).toBeDefined();

    await vi.advanceTimersByTimeAsync(1000);
    expect(store.getState().status.byId[id].email.status).toBe("sending");

    await vi.advanceTimersByTimeAsync(1000);
    expect(store.getState().status.byId[id].email.status).toBe("sent");
    await loop;
    expect(store.getState().status.following[id]).toBeUndefined();

    await vi.advanceTimersByTimeAsync(10_000);
    expect(fetch).toHaveBeenCalledTimes(3);
    expect(calls(fetch)).toEqual(Array(3).fill(`GET /email/${id}`));
  });

  it("stops at dead, keeping the last error", async () => {
    const fetch = stubFetch(() => json(200, email("dead", { lastError: "ses: MessageRejected" })));
    const store = makeStore(signedIn());
    await store.dispatch(followEmail("m1"));
    await vi.advanceTimersByTimeAsync(5000);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(store.getState().status.byId.m1.email.lastError).toBe("ses: MessageRejected");
  });

  it("keeps polling through a network failure, showing it", async () => {
    let fail = true;
    const fetch = stubFetch(() => {
      if (fail) throw new TypeError("Failed to fetch");
      return json(200, email("sent"));
    });
    const store = makeStore(signedIn());
    const loop = store.dispatch(followEmail("m1"));
    await vi.advanceTimersByTimeAsync(0);
    expect(store.getState().status.byId.m1.error).toBe(NETWORK_ERROR);
    fail = false;
    await vi.advanceTimersByTimeAsync(1000);
    await loop;
    expect(store.getState().status.byId.m1).toEqual({ email: email("sent"), error: null });
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it("stops on a 404", async () => {
    const fetch = stubFetch(() => json(404, { errors: { base: "Not found" } }));
    const store = makeStore(signedIn());
    await store.dispatch(followEmail("nope"));
    await vi.advanceTimersByTimeAsync(5000);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(store.getState().status.byId.nope.error).toBe("Not found");
    expect(store.getState().status.following.nope).toBeUndefined();
  });

  it("stops every poll when the session has ended (401)", async () => {
    let ended = false;
    const fetch = stubFetch((_method, path) =>
      ended && path === "/email/m1" ? json(401, { errors: { base: "Authentication required" } }) : json(200, email("queued")),
    );
    const store = makeStore(signedIn());
    const loops = [store.dispatch(followEmail("m1")), store.dispatch(followEmail("m2"))];
    await vi.advanceTimersByTimeAsync(1000);
    expect(fetch).toHaveBeenCalledTimes(4);
    ended = true;
    await vi.advanceTimersByTimeAsync(1000);
    await Promise.all(loops);
    const asked = fetch.mock.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(fetch).toHaveBeenCalledTimes(asked);
    expect(store.getState().status).toEqual({ byId: {}, following: {} });
    expect(store.getState().session).toMatchObject({ status: "signedOut", user: null });
  });

  it("stops when told to", async () => {
    const fetch = stubFetch(() => json(200, email("queued")));
    const store = makeStore(signedIn());
    const loop = store.dispatch(followEmail("m1"));
    await vi.advanceTimersByTimeAsync(2000);
    expect(fetch).toHaveBeenCalledTimes(3);
    store.dispatch(stopFollowing("m1"));
    await vi.advanceTimersByTimeAsync(5000);
    await loop;
    expect(fetch).toHaveBeenCalledTimes(3);
  });

  it("lets a restarted follow replace the old loop (no double polling)", async () => {
    const fetch = stubFetch(() => json(200, email("queued")));
    const store = makeStore(signedIn());
    store.dispatch(followEmail("m1"));
    store.dispatch(stopFollowing("m1"));
    store.dispatch(followEmail("m1"));
    await vi.advanceTimersByTimeAsync(0);
    const first = fetch.mock.calls.length; // both loops fetched once
    await vi.advanceTimersByTimeAsync(3000);
    expect(fetch.mock.calls.length - first).toBe(3);
  });
});

describe("session slice", () => {
  it("is signed out, without an error, when GET /session answers 401", async () => {
    stubFetch(() => json(401, { errors: { base: "Not signed in" } }));
    const store = makeStore();
    expect(store.getState().session.status).toBe("checking");
    await store.dispatch(loadSession());
    expect(store.getState().session).toMatchObject({ status: "signedOut", user: null, errors: {} });
  });

  it("signs in, or keeps the errors of a wrong password and of missing fields", async () => {
    document.cookie = "csrftoken=t";
    let answer = json(401, { errors: { base: "Wrong username or password" } });
    stubFetch(() => answer);
    const store = makeStore();
    await store.dispatch(signIn({ username: "ada", password: "bad" }));
    expect(store.getState().session.errors).toEqual({ base: "Wrong username or password" });

    answer = json(422, { errors: { password: "Password is required" } });
    await store.dispatch(signIn({ username: "ada", password: "" }));
    expect(store.getState().session.errors).toEqual({ password: "Password is required" });

    answer = json(200, USER);
    await store.dispatch(signIn({ username: "ada", password: "good" }));
    expect(store.getState().session).toMatchObject({ status: "signedIn", user: USER, errors: {} });
  });

  it("forgets everything of the user on sign-out", async () => {
    stubFetch((method, path) => {
      if (method === "DELETE") return new Response(null, { status: 204 });
      if (path === "/email/send") return json(200, { messageId: "m1" });
      return json(200, []);
    });
    const store = filledStore();
    await store.dispatch(sendEmail());
    await store.dispatch(fetchRecent(""));
    await store.dispatch(signOut());
    const state = store.getState();
    expect(state.session).toMatchObject({ status: "signedOut", user: null });
    expect(state.send.messageId).toBeNull();
    expect(state.send.fields.fromEmail).toBe("");
    expect(state.recent.loaded).toBe(false);
  });
});

describe("a session that ended elsewhere", () => {
  const UNAUTHORIZED = () => json(401, { errors: { base: "Authentication required" } });

  it.each([
    ["send", (store) => store.dispatch(sendEmail())],
    ["recent", (store) => store.dispatch(fetchRecent(""))],
    ["providers", (store) => store.dispatch(fetchProviders())],
    ["status", (store) => store.dispatch(followEmail("m1"))],
    ["sign-out", (store) => store.dispatch(signOut())],
  ])("signs the app out, with a notice, when a %s call answers 401", async (_name, call) => {
    let answer = json(200, [email("sent")]);
    stubFetch(() => answer);
    const store = filledStore();
    await store.dispatch(fetchRecent(""));
    answer = UNAUTHORIZED();
    await call(store);
    const state = store.getState();
    expect(state.session).toEqual({
      status: "signedOut",
      user: null,
      pending: false,
      errors: { base: SESSION_ENDED },
      signOutError: null,
    });
    expect(state.send.fields.fromEmail).toBe("");
    expect(state.send.errors).toEqual({});
    expect(state.recent.items).toEqual([]);
    expect(state.status.following).toEqual({});
  });

  it("keeps a wrong password's own error, and is not replaced by a late 401", async () => {
    document.cookie = "csrftoken=t";
    let answer = json(401, { errors: { base: "Wrong username or password" } });
    stubFetch(() => answer);
    const store = makeStore({ session: { status: "signedOut", user: null, pending: false, errors: {}, signOutError: null } });
    await store.dispatch(signIn({ username: "ada", password: "bad" }));
    expect(store.getState().session.errors).toEqual({ base: "Wrong username or password" });
    answer = UNAUTHORIZED();
    await store.dispatch(fetchProviders()); // a request of the old session, answered late
    expect(store.getState().session.errors).toEqual({ base: "Wrong username or password" });
  });
});

describe("recent and providers slices", () => {
  it("loads recent emails of the chosen status", async () => {
    const fetch = stubFetch(() => json(200, [{ ...email("dead"), toEmail: "b@x.io", toName: "", subject: "S" }]));
    const store = makeStore(signedIn());
    store.dispatch(filterChanged("dead"));
    await store.dispatch(fetchRecent(store.getState().recent.filter));
    expect(calls(fetch)).toEqual(["GET /email/recent?status=dead&limit=50"]);
    expect(store.getState().recent.items).toHaveLength(1);
  });

  it("keeps only the newest recent answer when two overlap", async () => {
    const first = deferred();
    stubFetch((_m, path) => (path.includes("status=sent") ? json(200, [email("sent")]) : first.promise));
    const store = makeStore(signedIn());
    const older = store.dispatch(fetchRecent(""));
    await store.dispatch(fetchRecent("sent"));
    first.resolve(json(200, [email("queued"), email("dead")]));
    await older;
    expect(store.getState().recent.items.map((e) => e.status)).toEqual(["sent"]);
  });

  it("loads providers and keeps their error", async () => {
    let answer = json(200, [{ name: "ses", healthy: true }]);
    stubFetch(() => answer);
    const store = makeStore(signedIn());
    await store.dispatch(fetchProviders());
    expect(store.getState().providers.items).toEqual([{ name: "ses", healthy: true }]);
    expect(store.getState().providers.updatedAt).toBeTruthy();
    answer = json(503, { errors: { base: "Service unavailable" } });
    await store.dispatch(fetchProviders());
    expect(store.getState().providers.error).toBe("Service unavailable");
    expect(store.getState().providers.items).toHaveLength(1);
  });
});
