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

  it("asks for a new token after signing in and after signing out (Django rotates it)", async () => {
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
      "GET /session/csrf",
      "POST /session",
    ]);
    expect(fetch.mock.calls.filter(([, init]) => init.method !== "GET").map(([, init]) => init.headers["X-CSRFToken"]))
      .toEqual(["t1", "t2", "t3"]);
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
