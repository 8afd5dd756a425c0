import { act, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import EmailPage from "../src/components/EmailPage.jsx";
import RecentPage from "../src/components/RecentPage.jsx";
import { calls, email, json, renderWithStore, signedIn, stubFetch } from "./helpers.jsx";

describe("EmailPage (delivery status)", () => {
  it("follows a status live until it is final, then stops polling", async () => {
    vi.useFakeTimers();
    const answers = [
      email("queued"),
      email("failed", { attempts: 1, provider: "sendgrid", lastError: "sendgrid: HTTP 503" }),
      email("sent", { attempts: 2 }),
    ];
    const fetch = stubFetch(() => json(200, answers.length > 1 ? answers.shift() : answers[0]));
    const id = email("queued").messageId;
    renderWithStore(<EmailPage messageId={id} />, signedIn());

    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(screen.getByTestId("email-status")).toHaveTextContent("queued");
    expect(screen.getByTestId("message-id")).toHaveTextContent(id);
    expect(screen.getByTestId("polling-state")).toHaveTextContent("Updating every second");

    await act(() => vi.advanceTimersByTimeAsync(1000));
    expect(screen.getByTestId("email-status")).toHaveTextContent("failed");
    expect(screen.getByTestId("email-provider")).toHaveTextContent("sendgrid");
    expect(screen.getByTestId("email-attempts")).toHaveTextContent("1");
    expect(screen.getByTestId("email-last-error")).toHaveTextContent("sendgrid: HTTP 503");

    await act(() => vi.advanceTimersByTimeAsync(1000));
    expect(screen.getByTestId("email-status")).toHaveTextContent("sent");
    expect(screen.getByTestId("email-status")).toHaveAttribute("data-status", "sent");
    expect(screen.getByTestId("polling-state")).toHaveTextContent("Final status");

    await act(() => vi.advanceTimersByTimeAsync(10_000));
    expect(calls(fetch)).toEqual(Array(3).fill(`GET /email/${id}`));
  });

  it("stops polling when the page is left", async () => {
    vi.useFakeTimers();
    const fetch = stubFetch(() => json(200, email("queued")));
    const { unmount } = renderWithStore(<EmailPage messageId="m1" />, signedIn());
    await act(() => vi.advanceTimersByTimeAsync(1000));
    expect(fetch).toHaveBeenCalledTimes(2);
    unmount();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it("says when the email is not found", async () => {
    stubFetch(() => json(404, { errors: { base: "Not found" } }));
    renderWithStore(<EmailPage messageId="nope" />, signedIn());
    expect(await screen.findByTestId("banner")).toHaveTextContent("Not found");
    expect(screen.getByTestId("polling-state")).toHaveTextContent("Not updating.");
  });
});

describe("RecentPage", () => {
  const recent = (status, subject, extra = {}) => ({
    ...email(status, { messageId: `id-${subject}` }),
    toEmail: "bob@example.com",
    toName: "Bob",
    subject,
    ...extra,
  });

  it("lists recent emails with their status, filters by status and links to each", async () => {
    const fetch = stubFetch((_method, path) =>
      path.includes("status=dead")
        ? json(200, [recent("dead", "Two")])
        : json(200, [recent("sent", "One"), recent("dead", "Two"), recent("queued", "", { toName: "" })]),
    );
    const user = userEvent.setup();
    renderWithStore(<RecentPage />, signedIn());

    const rows = await screen.findAllByTestId("recent-row");
    expect(rows).toHaveLength(3);
    expect(within(rows[0]).getByRole("link", { name: "One" })).toHaveAttribute("href", "#/email/id-One");
    expect(within(rows[0]).getByTestId("recent-status")).toHaveTextContent("sent");
    expect(within(rows[0]).getByText("To Bob <bob@example.com>")).toBeInTheDocument();
    expect(within(rows[2]).getByRole("link", { name: "(no subject)" })).toBeInTheDocument();

    await user.selectOptions(screen.getByLabelText("Status"), "dead");
    await vi.waitFor(() => expect(screen.getAllByTestId("recent-row")).toHaveLength(1));
    expect(within(screen.getByTestId("recent-row")).getByTestId("recent-status")).toHaveTextContent("dead");
    expect(calls(fetch)).toEqual(["GET /email/recent?limit=50", "GET /email/recent?status=dead&limit=50"]);
  });

  it("says when there is nothing of that status", async () => {
    stubFetch(() => json(200, []));
    renderWithStore(<RecentPage />, signedIn({ recent: { filter: "failed", items: [], loading: false, loaded: false, error: null, requestId: null } }));
    expect(await screen.findByText("No failed emails.")).toBeInTheDocument();
  });
});
