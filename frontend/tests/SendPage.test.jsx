import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import SendPage from "../src/components/SendPage.jsx";
import { calls, deferred, email, json, renderWithStore, signedIn, stubFetch } from "./helpers.jsx";

const LABELS = ["From name", "From email", "To name", "To email", "Subject", "Body"];

async function fillIn(user) {
  await user.type(screen.getByLabelText("From email"), "ada@example.com");
  await user.type(screen.getByLabelText("To email"), "bob@example.com");
  await user.type(screen.getByLabelText("Subject"), "Hi");
  await user.type(screen.getByLabelText("Body"), "Hello Bob");
}

describe("SendPage", () => {
  it("has every field labelled, with hints for required ones and email types", () => {
    renderWithStore(<SendPage />, signedIn());
    for (const label of LABELS) expect(screen.getByLabelText(label)).toBeInTheDocument();
    expect(screen.getByLabelText("From email")).toHaveAttribute("type", "email");
    expect(screen.getByLabelText("To email")).toBeRequired();
    expect(screen.getByLabelText("Body")).toBeRequired();
    expect(screen.getByLabelText("Subject")).not.toBeRequired();
    expect(screen.getByRole("heading", { level: 1, name: "Send an email" })).toBeInTheDocument();
  });

  it("shows each field's error from a 422 next to it, and focuses the first", async () => {
    const fetch = stubFetch(() =>
      json(422, {
        errors: {
          fromEmail: "From email is not a valid email",
          toEmail: "To email is required",
          body: "Body is required",
        },
      }),
    );
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await user.type(screen.getByLabelText("From email"), "not-an-address");
    // The browser's own checks do not stop the request: the server decides.
    await user.click(screen.getByRole("button", { name: "Send" }));

    const fromEmail = screen.getByLabelText("From email");
    await waitFor(() => expect(fromEmail).toHaveAttribute("aria-invalid", "true"));
    expect(calls(fetch)).toEqual(["POST /email/send"]);
    expect(JSON.parse(fetch.mock.calls[0][1].body).email.fromEmail).toBe("not-an-address");
    const expected = {
      "From email": "From email is not a valid email",
      "To email": "To email is required",
      Body: "Body is required",
    };
    for (const [label, message] of Object.entries(expected)) {
      const input = screen.getByLabelText(label);
      expect(input).toHaveAttribute("aria-invalid", "true");
      expect(input).toHaveAccessibleDescription(message);
      expect(input.nextElementSibling).toHaveTextContent(message);
    }
    for (const label of ["From name", "To name", "Subject"]) {
      expect(screen.getByLabelText(label)).toHaveAttribute("aria-invalid", "false");
      expect(screen.getByLabelText(label)).not.toHaveAccessibleDescription();
    }
    expect(fromEmail).toHaveFocus();
    expect(screen.queryByTestId("banner")).not.toBeInTheDocument();

    // Editing a field clears its (now stale) message.
    await user.type(fromEmail, "@example.com");
    expect(fromEmail).toHaveAttribute("aria-invalid", "false");
    expect(screen.getByLabelText("Body")).toHaveAttribute("aria-invalid", "true");
  });

  it("disables the button while sending, then shows the message id and follows its status", async () => {
    const answer = deferred();
    const fetch = stubFetch((method, path) => {
      if (path === "/email/send") return answer.promise;
      return json(200, email("sent", { messageId: "m-42" }));
    });
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await fillIn(user);
    await user.click(screen.getByRole("button", { name: "Send" }));

    const button = screen.getByRole("button", { name: "Sending…" });
    expect(button).toBeDisabled();
    expect(screen.getByRole("form", { name: "Send an email" })).toHaveAttribute("aria-busy", "true");

    answer.resolve(json(200, { messageId: "m-42" }));
    expect(await screen.findByTestId("message-id")).toHaveTextContent("m-42");
    expect(screen.getByRole("button", { name: "Send" })).toBeEnabled();
    expect(screen.getByRole("heading", { name: "Email accepted" })).toHaveFocus();
    expect(await screen.findByTestId("email-status")).toHaveTextContent("sent");
    expect(screen.getByTestId("email-provider")).toHaveTextContent("ses");
    expect(screen.getByText("Final status: no more updates.")).toBeInTheDocument();
    expect(calls(fetch)).toEqual(["POST /email/send", "GET /email/m-42"]);
    expect(screen.getByLabelText("Body")).toHaveValue("");
    expect(screen.getByLabelText("From email")).toHaveValue("ada@example.com");
  });

  it("submits with Enter from a one-line field", async () => {
    const fetch = stubFetch(() => json(503, { errors: { base: "Service unavailable" } }));
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await user.type(screen.getByLabelText("To email"), "bob@example.com{Enter}");
    await screen.findByTestId("banner");
    expect(calls(fetch)).toEqual(["POST /email/send"]);
  });

  it("submits with Ctrl+Enter from the body", async () => {
    const fetch = stubFetch(() => json(503, { errors: { base: "Service unavailable" } }));
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await user.type(screen.getByLabelText("Body"), "Line one{Enter}Line two");
    expect(fetch).not.toHaveBeenCalled();
    await user.keyboard("{Control>}{Enter}{/Control}");
    await screen.findByTestId("banner");
    expect(JSON.parse(fetch.mock.calls[0][1].body).email.body).toBe("Line one\nLine two");
  });

  it.each([
    ["a 503", () => json(503, { errors: { base: "Service unavailable" } }), "Service unavailable"],
    ["a 400", () => json(400, { errors: { base: "Body contains characters outside the allowed set" } }), "Body contains characters outside the allowed set"],
    [
      "a network failure",
      () => {
        throw new TypeError("Failed to fetch");
      },
      "Network error: could not reach the server",
    ],
  ])("shows %s in a focused banner", async (_name, answer, message) => {
    stubFetch(answer);
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await fillIn(user);
    await user.click(screen.getByRole("button", { name: "Send" }));
    const banner = await screen.findByRole("alert");
    expect(banner).toHaveTextContent(message);
    expect(banner).toHaveAttribute("data-testid", "banner");
    expect(banner).toHaveFocus();
    expect(screen.queryByTestId("message-id")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Send" })).toBeEnabled();
    // Nothing was lost: the user can send again.
    expect(screen.getByLabelText("Body")).toHaveValue("Hello Bob");
    for (const label of LABELS) expect(screen.getByLabelText(label)).toHaveAttribute("aria-invalid", "false");
  });
});
