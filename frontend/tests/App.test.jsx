import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import App from "../src/App.jsx";
import { calls, email, json, renderWithStore, stubFetch, USER } from "./helpers.jsx";

// A small fake of the API with a session: what a browser would see. `endSession()` ends it
// as another tab's sign-out (or its expiry) would.
function fakeServer({ signedIn = false } = {}) {
  let user = signedIn ? USER : null;
  const fetch = stubFetch((method, path, body, init) => {
    if (path === "/session" && method === "GET") {
      document.cookie = "csrftoken=c1";
      return user ? json(200, user) : json(401, { errors: { base: "Not signed in" } });
    }
    if (path === "/session" && method === "POST") {
      if (init.headers["X-CSRFToken"] !== "c1") return json(403, { errors: { base: "CSRF Failed" } });
      if (body.password !== "secret") return json(401, { errors: { base: "Wrong username or password" } });
      user = USER;
      return json(200, user);
    }
    if (path === "/session" && method === "DELETE") {
      user = null;
      return new Response(null, { status: 204 });
    }
    if (!user) return json(401, { errors: { base: "Authentication required" } });
    if (path.startsWith("/email/recent")) {
      return json(200, [{ ...email("sent", { messageId: "m-1" }), toEmail: "bob@example.com", toName: "", subject: "Hello" }]);
    }
    if (path === "/email/m-1") return json(200, email("sent", { messageId: "m-1" }));
    if (path === "/email/m-2") return json(200, email("queued", { messageId: "m-2" }));
    if (path === "/providers") return json(200, []);
    return json(404, { errors: { base: "Not found" } });
  });
  fetch.endSession = () => {
    user = null;
  };
  return fetch;
}

describe("App", () => {
  it("signs in, navigates with the header links and signs out", async () => {
    const fetch = fakeServer();
    const user = userEvent.setup();
    renderWithStore(<App />);

    // Signed out: the sign-in form, with a wrong password's error in a banner.
    expect(await screen.findByRole("heading", { name: "Sign in" })).toBeInTheDocument();
    expect(screen.getByRole("main")).toBeInTheDocument();
    expect(screen.queryByRole("navigation")).not.toBeInTheDocument();
    await user.type(screen.getByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "wrong{Enter}");
    expect(await screen.findByTestId("banner")).toHaveTextContent("Wrong username or password");

    await user.clear(screen.getByLabelText("Password"));
    await user.type(screen.getByLabelText("Password"), "secret");
    await user.click(screen.getByRole("button", { name: "Sign in" }));

    // Signed in: the send page, landmarks, the user's name.
    const heading = await screen.findByRole("heading", { level: 1, name: "Send an email" });
    await waitFor(() => expect(heading).toHaveFocus());
    const nav = screen.getByRole("navigation", { name: "Main" });
    expect(within(nav).getByRole("link", { name: "Send" })).toHaveAttribute("aria-current", "page");
    expect(screen.getByRole("banner")).toHaveTextContent("ada");
    expect(within(nav).queryByRole("link", { name: "Admin" })).not.toBeInTheDocument();

    // Recent emails, and one email's status page.
    await user.click(within(nav).getByRole("link", { name: "Recent emails" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Recent emails" })).toBeInTheDocument();
    expect(window.location.hash).toBe("#/recent");
    await user.click(await screen.findByRole("link", { name: "Hello" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Delivery status" })).toHaveFocus();
    expect(await screen.findByTestId("email-status")).toHaveTextContent("sent");
    expect(screen.getByText("bob@example.com")).toBeInTheDocument();

    await user.click(within(nav).getByRole("link", { name: "Providers" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Providers" })).toBeInTheDocument();
    expect(await screen.findByText("No providers are configured.")).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "Sign out" }));
    expect(await screen.findByRole("heading", { name: "Sign in" })).toBeInTheDocument();
    expect(calls(fetch)).toContain("DELETE /session");
    const del = fetch.mock.calls.find(([, init]) => init.method === "DELETE");
    expect(del[1].headers["X-CSRFToken"]).toBe("c1");
  });

  it("goes back to the sign-in form when the session ends elsewhere, then back to the page", async () => {
    vi.useFakeTimers();
    window.location.hash = "#/email/m-2";
    const fetch = fakeServer({ signedIn: true });
    renderWithStore(<App />);
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(screen.getByTestId("email-status")).toHaveTextContent("queued");
    expect(screen.getByRole("banner")).toHaveTextContent("ada");

    // Signed out in another tab: the next poll answers 401.
    fetch.endSession();
    await act(() => vi.advanceTimersByTimeAsync(1000));
    expect(calls(fetch).at(-1)).toBe("GET /email/m-2");
    expect(screen.getByRole("heading", { level: 1, name: "Sign in" })).toBeInTheDocument();
    expect(screen.getByTestId("banner")).toHaveTextContent("Your session has ended: please sign in again");
    expect(screen.getByRole("banner")).not.toHaveTextContent("ada");
    expect(screen.queryByRole("navigation")).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Sign out" })).not.toBeInTheDocument();
    // No more polling.
    const asked = fetch.mock.calls.length;
    await act(() => vi.advanceTimersByTimeAsync(10_000));
    expect(fetch).toHaveBeenCalledTimes(asked);

    // A wrong password still says so, in place of the notice; the right one goes back.
    vi.useRealTimers();
    const user = userEvent.setup();
    await user.type(screen.getByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "wrong{Enter}");
    await waitFor(() => expect(screen.getByTestId("banner")).toHaveTextContent("Wrong username or password"));
    expect(screen.getAllByTestId("banner")).toHaveLength(1);
    await user.clear(screen.getByLabelText("Password"));
    await user.type(screen.getByLabelText("Password"), "secret{Enter}");
    expect(await screen.findByRole("heading", { level: 1, name: "Delivery status" })).toBeInTheDocument();
    expect(await screen.findByTestId("email-status")).toHaveTextContent("queued");
    expect(screen.queryByTestId("banner")).not.toBeInTheDocument();
  });

  it("opens the page named by the hash once signed in", async () => {
    window.location.hash = "#/email/m-1";
    const fetch = stubFetch((method, path) => {
      if (path === "/session") return json(200, { username: "root", isStaff: true });
      return json(200, email("sent", { messageId: "m-1" }));
    });
    renderWithStore(<App />);
    expect(await screen.findByRole("heading", { level: 1, name: "Delivery status" })).toBeInTheDocument();
    expect(screen.getByTestId("message-id")).toHaveTextContent("m-1");
    expect(screen.getByRole("link", { name: "Admin" })).toHaveAttribute("href", "/admin/");
    await screen.findByTestId("email-status");
    expect(calls(fetch)).toEqual(["GET /session", "GET /email/m-1"]);
  });

  it("says so when the server cannot be reached at all", async () => {
    stubFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    renderWithStore(<App />);
    expect(await screen.findByTestId("banner")).toHaveTextContent("Network error: could not reach the server");
    expect(screen.getByRole("heading", { name: "Sign in" })).toBeInTheDocument();
  });
});
