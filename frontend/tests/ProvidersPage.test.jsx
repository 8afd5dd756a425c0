import { act, screen, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import ProvidersPage from "../src/components/ProvidersPage.jsx";
import { json, renderWithStore, signedIn, stubFetch } from "./helpers.jsx";

function provider(name, extra = {}) {
  return {
    name,
    enabled: true,
    drained: false,
    healthy: true,
    probing: false,
    since: "2026-11-30T06:00:00Z",
    consecutiveFailures: 0,
    consecutivePasses: 12,
    inFlight: 0,
    lastError: "",
    ...extra,
  };
}

const rowOf = (name) => screen.getAllByTestId("provider-row").find((row) => row.dataset.provider === name);

describe("ProvidersPage", () => {
  it("shows each provider green or red, probing and drained", async () => {
    stubFetch(() =>
      json(200, [
        provider("ses"),
        provider("sendgrid", {
          healthy: false,
          probing: true,
          consecutiveFailures: 3,
          consecutivePasses: 0,
          lastError: "sendgrid: HTTP 503",
        }),
        provider("mailgun", { healthy: false, drained: true }),
      ]),
    );
    renderWithStore(<ProvidersPage />, signedIn());
    expect(await screen.findAllByTestId("provider-row")).toHaveLength(3);

    const ses = rowOf("ses");
    expect(ses).toHaveClass("healthy");
    expect(within(ses).getByTestId("provider-health")).toHaveAttribute("data-health", "healthy");
    expect(within(ses).getByTestId("provider-health")).toHaveClass("healthy");
    expect(within(ses).getByTestId("provider-health")).toHaveTextContent("Healthy");
    expect(within(ses).queryByText("Probed each run")).not.toBeInTheDocument();
    expect(within(ses).getByRole("heading", { name: "ses" })).toBeInTheDocument();
    expect(within(ses).getByText("Since").nextElementSibling.querySelector("time")).toHaveAttribute(
      "datetime",
      "2026-11-30T06:00:00Z",
    );

    const sendgrid = rowOf("sendgrid");
    expect(sendgrid).toHaveClass("unhealthy");
    expect(within(sendgrid).getByTestId("provider-health")).toHaveAttribute("data-health", "unhealthy");
    expect(within(sendgrid).getByTestId("provider-health")).toHaveTextContent("Unhealthy");
    // `probing`: unhealthy, not drained, so it gets one probe message per pipeline run.
    expect(within(sendgrid).getByText("Probed each run")).toBeInTheDocument();
    expect(within(sendgrid).queryByText(/in progress/i)).not.toBeInTheDocument();
    expect(within(sendgrid).getByText("sendgrid: HTTP 503")).toBeInTheDocument();
    expect(within(sendgrid).queryByText("Drained")).not.toBeInTheDocument();

    const mailgun = rowOf("mailgun");
    expect(within(mailgun).getByText("Drained")).toBeInTheDocument();
    expect(within(mailgun).queryByText("Probed each run")).not.toBeInTheDocument();
  });

  it("refreshes every few seconds while shown, and not after", async () => {
    vi.useFakeTimers();
    let healthy = true;
    const fetch = stubFetch(() => json(200, [provider("ses", { healthy, probing: !healthy })]));
    const { unmount } = renderWithStore(<ProvidersPage />, signedIn());
    await act(() => vi.advanceTimersByTimeAsync(0));
    expect(screen.getByTestId("provider-health")).toHaveTextContent("Healthy");

    healthy = false;
    await act(() => vi.advanceTimersByTimeAsync(5000));
    expect(screen.getByTestId("provider-health")).toHaveTextContent("Unhealthy");
    expect(screen.getByText("Probed each run")).toBeInTheDocument();
    expect(fetch).toHaveBeenCalledTimes(2);

    unmount();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it("shows a failure in the banner", async () => {
    stubFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    renderWithStore(<ProvidersPage />, signedIn());
    expect(await screen.findByTestId("banner")).toHaveTextContent("Network error: could not reach the server");
  });
});
