// The send form's recipients, HTML preview, attachments, tags and metadata, and the status
// page's account of them.
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import EmailPage from "../src/components/EmailPage.jsx";
import SendPage from "../src/components/SendPage.jsx";
import { email, json, LIMITS, renderWithStore, signedIn, stubFetch } from "./helpers.jsx";

const sent = (fetch) => JSON.parse(fetch.mock.calls.find(([path]) => path === "/email/send")[1].body).email;

function answering(send = () => json(200, { messageId: "m-42" })) {
  return stubFetch((method, path) => {
    if (path === "/email/limits") return json(200, LIMITS);
    if (path === "/email/send") return send();
    return json(200, email("queued", { messageId: "m-42" }));
  });
}

async function fillIn(user) {
  await user.type(screen.getByLabelText("From email"), "ada@example.com");
  await user.type(screen.getByLabelText("To email"), "bob@example.com");
  await user.type(screen.getByLabelText("Body"), "Hello");
}

describe("SendPage recipients", () => {
  it("adds and removes To, Cc and Bcc rows, and sends the lists", async () => {
    const fetch = answering();
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    // One To row, which cannot be removed; no Cc or Bcc until added.
    expect(screen.queryByRole("button", { name: /Remove To recipient/ })).not.toBeInTheDocument();
    expect(screen.queryByLabelText("Cc email")).not.toBeInTheDocument();
    await fillIn(user);

    await user.click(screen.getByRole("button", { name: "Add To recipient" }));
    expect(screen.getByLabelText("To email 2")).toHaveFocus();
    await user.type(screen.getByLabelText("To name 2"), "Eve");
    await user.type(screen.getByLabelText("To email 2"), "eve@example.com");
    await user.click(screen.getByRole("button", { name: "Add Cc" }));
    expect(screen.getByLabelText("Cc email")).toHaveFocus();
    await user.keyboard("carol@example.org");
    await user.click(screen.getByRole("button", { name: "Add Bcc" }));
    await user.keyboard("dan@example.net");
    await user.click(screen.getByRole("button", { name: "Remove Bcc recipient" }));
    expect(screen.queryByLabelText("Bcc email")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Add Bcc" })).toHaveFocus();

    await user.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByTestId("message-id")).toHaveTextContent("m-42");
    expect(sent(fetch)).toMatchObject({
      to: [{ email: "bob@example.com" }, { email: "eve@example.com", name: "Eve" }],
      cc: [{ email: "carol@example.org" }],
    });
    expect(sent(fetch)).not.toHaveProperty("bcc");
    // Back to one empty To row for the next email.
    expect(screen.queryByLabelText("To email 2")).not.toBeInTheDocument();
    expect(screen.queryByLabelText("Cc email")).not.toBeInTheDocument();
  });

  it("shows a 422's errors beside the right row and file, and focuses the first", async () => {
    answering(() =>
      json(422, {
        errors: {
          "to[2].email": "To email is not a valid email",
          "cc[0].email": "Cc email is not a valid email",
          "attachments[0].filename": "Filename must not contain a path",
          recipients: "At most 50 recipients",
        },
      }),
    );
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await fillIn(user);
    for (const address of ["eve@example.com", "not-an-address"]) {
      await user.click(screen.getByRole("button", { name: "Add To recipient" }));
      await user.keyboard(address);
    }
    await user.click(screen.getByRole("button", { name: "Add Cc" }));
    await user.keyboard("carol");
    await user.upload(screen.getByLabelText("Attachments"), new File(["a"], "a.txt", { type: "text/plain" }));
    await user.click(screen.getByRole("button", { name: "Send" }));

    const third = screen.getByLabelText("To email 3");
    await waitFor(() => expect(third).toHaveAttribute("aria-invalid", "true"));
    expect(third).toHaveAccessibleDescription("To email is not a valid email");
    expect(third).toHaveFocus();
    expect(screen.getByLabelText("To email 2")).toHaveAttribute("aria-invalid", "false");
    expect(screen.getByLabelText("Cc email")).toHaveAccessibleDescription("Cc email is not a valid email");
    const file = screen.getByTestId("attachment");
    expect(within(file).getByTestId("attachment-error")).toHaveTextContent("Filename must not contain a path");
    expect(within(file).getByRole("button", { name: "Remove a.txt" })).toHaveAccessibleDescription(
      "Filename must not contain a path",
    );
    expect(screen.getByText("At most 50 recipients")).toBeInTheDocument();
    expect(screen.queryByTestId("banner")).not.toBeInTheDocument();

    // Removing the second To row keeps the third's error with it (now "To email 2").
    await user.click(screen.getByRole("button", { name: "Remove To recipient 2" }));
    expect(screen.getByLabelText("To email 2")).toHaveValue("not-an-address");
    expect(screen.getByLabelText("To email 2")).toHaveAccessibleDescription("To email is not a valid email");
  });
});

describe("SendPage HTML body", () => {
  it("previews the HTML live in a sandboxed frame, and makes the body optional", async () => {
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    expect(screen.getByLabelText("Body")).toBeRequired();
    expect(screen.queryByTitle("HTML preview")).not.toBeInTheDocument();

    await user.type(screen.getByLabelText("HTML body"), "<h1>Hi</h1><script>parent.hacked = 1</script>");
    const frame = screen.getByTitle("HTML preview");
    expect(frame.tagName).toBe("IFRAME");
    // An empty sandbox allows nothing: no scripts.
    expect(frame).toHaveAttribute("sandbox", "");
    expect(frame).toHaveAttribute("srcdoc", "<h1>Hi</h1><script>parent.hacked = 1</script>");
    expect(screen.getByLabelText("Body")).not.toBeRequired();
  });
});

describe("SendPage attachments", () => {
  it("lists each file with its size, refuses one over a limit beside it, and sends the rest", async () => {
    const fetch = answering();
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await fillIn(user);
    await user.upload(screen.getByLabelText("Attachments"), [
      new File(["x".repeat(1500)], "report.pdf", { type: "application/pdf" }),
      new File(["hello"], "notes.txt", { type: "text/plain" }),
    ]);

    const [report, notes] = screen.getAllByTestId("attachment");
    expect(report).toHaveTextContent("report.pdf");
    expect(within(report).getByTestId("attachment-size")).toHaveTextContent("1.5 KB");
    expect(within(notes).getByTestId("attachment-size")).toHaveTextContent("5 bytes");
    expect(within(report).getByTestId("attachment-error")).toHaveTextContent(
      "1.5 KB is over the limit of 1000 bytes for one file",
    );
    expect(within(notes).queryByTestId("attachment-error")).not.toBeInTheDocument();
    // The limits, once known, are said beside the picker.
    expect(screen.getByLabelText("Attachments")).toHaveAccessibleDescription("Up to 3 files, 1000 bytes each, 2.4 KB in all.");
    const send = screen.getByRole("button", { name: "Send" });
    expect(send).toBeDisabled();
    expect(screen.getByTestId("send-hint")).toHaveTextContent("Remove the files over a limit to send.");

    await user.click(within(report).getByRole("button", { name: "Remove report.pdf" }));
    await waitFor(() => expect(send).toBeEnabled());
    await user.click(send);
    expect(await screen.findByTestId("message-id")).toHaveTextContent("m-42");
    expect(sent(fetch).attachments).toEqual([{ filename: "notes.txt", contentType: "text/plain", content: btoa("hello") }]);
    expect(screen.queryByTestId("attachment")).not.toBeInTheDocument();
  });

  it("refuses a denied extension", async () => {
    answering();
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await user.upload(screen.getByLabelText("Attachments"), new File(["MZ"], "setup.exe"));
    expect(await screen.findByTestId("attachment-error")).toHaveTextContent("Files ending in .exe are not allowed");
    expect(screen.getByRole("button", { name: "Send" })).toBeDisabled();
  });
});

describe("SendPage tags and metadata", () => {
  it("sends the tags as a list and the metadata rows as an object", async () => {
    const fetch = answering();
    const user = userEvent.setup();
    renderWithStore(<SendPage />, signedIn());
    await fillIn(user);
    await user.type(screen.getByLabelText("Tags"), "welcome, trial");
    expect(screen.getByLabelText("Tags")).toHaveAccessibleDescription("Comma-separated.");
    await user.click(screen.getByRole("button", { name: "Add metadata" }));
    expect(screen.getByLabelText("Metadata key")).toHaveFocus();
    await user.keyboard("plan");
    await user.type(screen.getByLabelText("Metadata value"), "pro");
    await user.click(screen.getByRole("button", { name: "Add metadata" }));
    await user.keyboard("gone");
    await user.click(screen.getByRole("button", { name: "Remove metadata 2" }));
    await user.click(screen.getByRole("button", { name: "Send" }));
    await screen.findByTestId("message-id");
    expect(sent(fetch)).toMatchObject({ tags: ["welcome", "trial"], metadata: { plan: "pro" } });
  });
});

describe("EmailPage contents", () => {
  it("shows the recipients, tags, metadata and attachments of the status answer", async () => {
    stubFetch(() =>
      json(
        200,
        email("sent", {
          to: [{ email: "bob@example.com", name: "Bob" }],
          cc: [{ email: "carol@example.org" }],
          bcc: [],
          tags: ["welcome"],
          metadata: { plan: "pro" },
          attachments: [{ filename: "report.pdf", contentType: "application/pdf", size: 1536 }],
        }),
      ),
    );
    renderWithStore(<EmailPage messageId="m1" />, signedIn());
    expect(await screen.findByTestId("email-to")).toHaveTextContent("Bob <bob@example.com>");
    expect(screen.getByTestId("email-cc")).toHaveTextContent("carol@example.org");
    expect(screen.queryByTestId("email-bcc")).not.toBeInTheDocument();
    expect(screen.getByTestId("email-tags")).toHaveTextContent("welcome");
    expect(screen.getByTestId("email-metadata")).toHaveTextContent("plan: pro");
    expect(screen.getByTestId("email-attachment")).toHaveTextContent("report.pdf (1.5 KB, application/pdf)");
  });

  it("shows none of them for an answer without them (an older API)", async () => {
    stubFetch(() => json(200, email("sent")));
    renderWithStore(<EmailPage messageId="m1" />, signedIn());
    await screen.findByTestId("email-status");
    for (const id of ["email-to", "email-cc", "email-tags", "email-metadata", "email-attachments"]) {
      expect(screen.queryByTestId(id)).not.toBeInTheDocument();
    }
  });
});
