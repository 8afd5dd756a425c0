import { describe, expect, it } from "vitest";
import { ApiError, getRecentEmails, NETWORK_ERROR, request, sendEmail, signIn } from "../src/api.js";
import { json, stubFetch } from "./helpers.jsx";

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

  it("fetches the CSRF cookie before signing in when the page has none", async () => {
    const fetch = stubFetch((method) => {
      if (method === "GET") {
        document.cookie = "csrftoken=fresh";
        return json(401, { errors: { base: "Not signed in" } });
      }
      return json(200, { username: "ada", isStaff: false });
    });
    await signIn("ada", "pw");
    expect(fetch.mock.calls.map(([p, i]) => `${i.method} ${p}`)).toEqual(["GET /session", "POST /session"]);
    expect(fetch.mock.calls[1][1].headers["X-CSRFToken"]).toBe("fresh");
  });
});
