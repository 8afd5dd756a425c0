import { beforeEach, describe, expect, it, vi } from "vitest";
import {
  ApiError,
  apiBase,
  getRecentEmails,
  NETWORK_ERROR,
  request,
  sendEmail,
  signIn,
  signOut,
} from "../src/api.js";
import { calls, clearCsrfCookie, json, stubFetch } from "./helpers.jsx";

describe("api", () => {
  it("sends JSON with the CSRF cookie and same-origin credentials on a non-GET", async () => {
    document.cookie = "csrftoken=tok123";
    const fetch = stubFetch(() => json(200, { messageId: "m1" }));
    await expect(sendEmail({ toEmail: "a@b.c" })).resolves.toEqual({ messageId: "m1" });
    const [path, init] = fetch.mock.calls[0];
    expect(path).toBe("/email/send");
    expect(init.method).toBe("POST");
    expect(init.credentials).toBe("same-origin");
    expect(init.headers["X-CSRFToken"]).toBe("tok123");
    expect(init.headers["Content-Type"]).toBe("application/json");
    expect(JSON.parse(init.body)).toEqual({ email: { toEmail: "a@b.c" } });
  });

  it("sends no CSRF header nor body on a GET", async () => {
    document.cookie = "csrftoken=tok123";
    const fetch = stubFetch(() => json(200, []));
    await getRecentEmails({ status: "dead" });
    const [path, init] = fetch.mock.calls[0];
    expect(path).toBe("/email/recent?status=dead&limit=50");
    expect(init.headers["X-CSRFToken"]).toBeUndefined();
    expect(init.body).toBeUndefined();
    expect(init.credentials).toBe("same-origin");
  });

  it("parses the error shape into an ApiError", async () => {
    stubFetch(() => json(422, { errors: { toEmail: "To email is required", body: "Body is required" } }));
    const error = await request("POST", "/email/send", {}).catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(422);
    expect(error.errors).toEqual({ toEmail: "To email is required", body: "Body is required" });
  });

  it("maps a network failure to a base error", async () => {
    stubFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    const error = await request("GET", "/providers").catch((e) => e);
    expect(error.status).toBe(0);
    expect(error.errors).toEqual({ base: NETWORK_ERROR });
    expect(NETWORK_ERROR).toBe("Network error: could not reach the server");
  });

  it("gives a base error for an answer that is not the API's JSON", async () => {
    stubFetch(() => new Response("<h1>Bad gateway</h1>", { status: 502 }));
    const error = await request("GET", "/providers").catch((e) => e);
    expect(error.errors).toEqual({ base: "Unexpected answer from the server (HTTP 502)" });
  });

  it("answers null for 204", async () => {
    stubFetch(() => new Response(null, { status: 204 }));
    await expect(request("DELETE", "/session")).resolves.toBeNull();
  });

  it("asks GET /session/csrf for the token when the page has no CSRF cookie, then reuses it", async () => {
    clearCsrfCookie();
    const fetch = stubFetch((method, path) => {
      if (path === "/session/csrf") return json(200, { csrfToken: "fresh" });
      return json(200, { messageId: "m1" });
    });
    await sendEmail({});
    await sendEmail({});
    expect(calls(fetch)).toEqual(["GET /session/csrf", "POST /email/send", "POST /email/send"]);
    expect(fetch.mock.calls[1][1].headers["X-CSRFToken"]).toBe("fresh");
    expect(fetch.mock.calls[2][1].headers["X-CSRFToken"]).toBe("fresh");
  });

  it("asks for a new token after signing in (Django rotates it), not after signing out", async () => {
    clearCsrfCookie();
    let issued = 0;
    const fetch = stubFetch((method, path) => {
      if (path === "/session/csrf") return json(200, { csrfToken: `t${++issued}` });
      if (method === "DELETE") return new Response(null, { status: 204 });
      return json(200, { username: "ada", isStaff: false });
    });
    await signIn("ada", "pw");
    await signOut();
    await signIn("ada", "pw");
    expect(calls(fetch)).toEqual([
      "GET /session/csrf",
      "POST /session",
      "GET /session/csrf",
      "DELETE /session",
      "POST /session",
    ]);
    expect(fetch.mock.calls.filter(([, init]) => init.method !== "GET").map(([, init]) => init.headers["X-CSRFToken"]))
      .toEqual(["t1", "t2", "t2"]);
  });

  it("shares one token request between calls made together", async () => {
    clearCsrfCookie();
    let issued = 0;
    const fetch = stubFetch((method, path) =>
      path === "/session/csrf" ? json(200, { csrfToken: `t${++issued}` }) : json(200, { messageId: "m" }),
    );
    await Promise.all([sendEmail({}), sendEmail({}), sendEmail({})]);
    expect(calls(fetch).filter((call) => call === "GET /session/csrf")).toHaveLength(1);
    expect(fetch.mock.calls.filter(([, init]) => init.method === "POST").map(([, init]) => init.headers["X-CSRFToken"]))
      .toEqual(["t1", "t1", "t1"]);
  });

  it("after a CSRF refusal, asks for a fresh token and tries once more", async () => {
    clearCsrfCookie();
    let issued = 0;
    const fetch = stubFetch((method, path, body, init) => {
      if (path === "/session/csrf") return json(200, { csrfToken: `t${++issued}` });
      if (init.headers["X-CSRFToken"] !== "t2") {
        return json(403, { errors: { base: "CSRF Failed: CSRF token incorrect." } });
      }
      return json(200, { messageId: "m1" });
    });
    await expect(sendEmail({})).resolves.toEqual({ messageId: "m1" });
    expect(calls(fetch)).toEqual(["GET /session/csrf", "POST /email/send", "GET /session/csrf", "POST /email/send"]);
  });

  it("does not try again after a second CSRF refusal, nor after any other 403", async () => {
    let answer = json(403, { errors: { base: "CSRF Failed: CSRF cookie not set." } });
    const fetch = stubFetch((method, path) =>
      path === "/session/csrf" ? json(200, { csrfToken: "t" }) : answer.clone(),
    );
    const refused = await sendEmail({}).catch((e) => e);
    expect(refused.status).toBe(403);
    // Same origin: the retry reads the cookie again (another tab may have renewed it).
    expect(calls(fetch)).toEqual(["POST /email/send", "POST /email/send"]);

    fetch.mockClear();
    answer = json(403, { errors: { base: "You do not have permission to perform this action." } });
    const forbidden = await sendEmail({}).catch((e) => e);
    expect(forbidden.status).toBe(403);
    expect(calls(fetch)).toEqual(["POST /email/send"]);
  });

  describe("with the API on another origin (VITE_API_BASE)", () => {
    beforeEach(() => {
      vi.stubEnv("VITE_API_BASE", "https://api.example.org/");
    });

    it("calls the API's origin with the cookies and the token from /session/csrf, never the page's cookie", async () => {
      document.cookie = "csrftoken=a-cookie-of-the-ui-origin";
      const fetch = stubFetch((method, path) =>
        path.endsWith("/session/csrf") ? json(200, { csrfToken: "from-api" }) : json(200, { messageId: "m1" }),
      );
      expect(apiBase()).toBe("https://api.example.org");
      await sendEmail({ toEmail: "a@b.c" });
      expect(calls(fetch)).toEqual([
        "GET https://api.example.org/session/csrf",
        "POST https://api.example.org/email/send",
      ]);
      expect(fetch.mock.calls.every(([, init]) => init.credentials === "include")).toBe(true);
      expect(fetch.mock.calls[1][1].headers["X-CSRFToken"]).toBe("from-api");
    });
  });
});
