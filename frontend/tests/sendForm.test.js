// The send slice's new parts: recipient lists, HTML, tags, metadata and attachments, and the
// 422 errors placed beside the row or file they are about.
import { describe, expect, it } from "vitest";
import {
  addAttachments,
  attachmentRemoved,
  emailOf,
  fieldChanged,
  metadataAdded,
  metadataChanged,
  recipientAdded,
  recipientChanged,
  recipientRemoved,
  selectCannotSend,
  selectSendErrors,
  sendEmail,
  tagList,
} from "../src/features/send.js";
import { makeStore } from "../src/store.js";
import { calls, json, LIMITS, signedIn, stubFetch } from "./helpers.jsx";

function storeWith({ to = ["bob@example.com"], cc = [], bcc = [] } = {}) {
  const store = makeStore(signedIn());
  store.dispatch(fieldChanged({ name: "fromEmail", value: "ada@example.com" }));
  store.dispatch(fieldChanged({ name: "body", value: "Hello" }));
  const fill = (kind, addresses) =>
    addresses.forEach((address, index) => {
      if (kind !== "to" || index > 0) store.dispatch(recipientAdded(kind));
      const row = store.getState().send.recipients[kind][index];
      store.dispatch(recipientChanged({ kind, id: row.id, part: "email", value: address }));
    });
  fill("to", to);
  fill("cc", cc);
  fill("bcc", bcc);
  return store;
}

const rows = (store, kind) => store.getState().send.recipients[kind];
const sentEmail = (fetch) => JSON.parse(fetch.mock.calls.find(([path]) => path === "/email/send")[1].body).email;

describe("the email sent", () => {
  it("sends the lists when there is more than one recipient, with names only when given", async () => {
    const fetch = stubFetch(() => json(200, { messageId: "m1" }));
    const store = storeWith({ to: ["bob@example.com", "eve@example.com"], cc: ["carol@example.org"], bcc: ["dan@example.net"] });
    store.dispatch(recipientChanged({ kind: "cc", id: rows(store, "cc")[0].id, part: "name", value: "Carol" }));
    await store.dispatch(sendEmail());
    const email = sentEmail(fetch);
    expect(email).toEqual({
      fromName: "",
      fromEmail: "ada@example.com",
      to: [{ email: "bob@example.com" }, { email: "eve@example.com" }],
      cc: [{ email: "carol@example.org", name: "Carol" }],
      bcc: [{ email: "dan@example.net" }],
      subject: "",
      body: "Hello",
    });
    expect(email).not.toHaveProperty("toEmail");
  });

  it("sends HTML, tags and metadata only when given, and the body may then be left out", () => {
    const store = storeWith();
    store.dispatch(fieldChanged({ name: "body", value: "" }));
    store.dispatch(fieldChanged({ name: "html", value: "<p>Hi</p>" }));
    store.dispatch(fieldChanged({ name: "tags", value: " welcome, ,trial ,," }));
    store.dispatch(metadataAdded());
    store.dispatch(metadataAdded()); // left empty: not sent
    store.dispatch(metadataChanged({ id: store.getState().send.metadata[0].id, part: "key", value: "plan" }));
    store.dispatch(metadataChanged({ id: store.getState().send.metadata[0].id, part: "value", value: "pro" }));
    const email = emailOf(store.getState().send);
    expect(email).toMatchObject({ html: "<p>Hi</p>", tags: ["welcome", "trial"], metadata: { plan: "pro" } });
    expect(email).not.toHaveProperty("body");
    expect(tagList("")).toEqual([]);
    // Neither body nor HTML: the body is sent empty, for the API to say it is required.
    store.dispatch(fieldChanged({ name: "html", value: "" }));
    expect(emailOf(store.getState().send).body).toBe("");
  });

  it("keeps the only To row, removes others with their errors", async () => {
    stubFetch(() => json(422, { errors: { "to[1].email": "To email is not a valid email", recipients: "At most 50 recipients" } }));
    const store = storeWith({ to: ["bob@example.com", "nope"] });
    await store.dispatch(sendEmail());
    const second = rows(store, "to")[1].id;
    expect(selectSendErrors(store.getState()).at).toEqual({
      [`${second}.email`]: "To email is not a valid email",
      recipients: "At most 50 recipients",
    });
    store.dispatch(recipientRemoved({ kind: "to", id: second }));
    expect(store.getState().send.errors).toEqual({});
    store.dispatch(recipientRemoved({ kind: "to", id: rows(store, "to")[0].id }));
    expect(rows(store, "to")).toHaveLength(1);
  });
});

describe("422 errors, placed", () => {
  it("puts each list error beside its row, and the rest beside their fields or in the banner", async () => {
    stubFetch(() =>
      json(422, {
        errors: {
          "to[2].email": "To email is not a valid email",
          "cc[0].email": "carol@example.org is already a recipient (to[0].email)",
          "bcc[0].name": "Bcc name must not contain line breaks",
          "cc[5].email": "Cc email is not a valid email",
          "tags[1]": "Tag must be at most 64 characters",
          "metadata.plan": "Metadata value must not contain line breaks or control characters",
          body: "Body or HTML is required",
          replyTo: "Reply to is not a valid email",
          base: "Please fix these",
        },
      }),
    );
    const store = storeWith({ to: ["a@x.io", "b@x.io", "c"], cc: ["carol@example.org"], bcc: ["d@x.io"] });
    store.dispatch(metadataAdded());
    const meta = store.getState().send.metadata[0].id;
    store.dispatch(metadataChanged({ id: meta, part: "key", value: "plan" }));
    await store.dispatch(sendEmail());
    expect(selectSendErrors(store.getState())).toEqual({
      at: {
        [`${rows(store, "to")[2].id}.email`]: "To email is not a valid email",
        [`${rows(store, "cc")[0].id}.email`]: "carol@example.org is already a recipient (to[0].email)",
        [`${rows(store, "bcc")[0].id}.name`]: "Bcc name must not contain line breaks",
        tags: "Tag must be at most 64 characters",
        [meta]: "Metadata value must not contain line breaks or control characters",
        body: "Body or HTML is required",
      },
      // Places the form does not have: the base first, then the others.
      banner: "Please fix these Cc email is not a valid email Reply to is not a valid email",
    });
    // Typing HTML answers "Body or HTML is required" too.
    store.dispatch(fieldChanged({ name: "html", value: "<p>x</p>" }));
    expect(selectSendErrors(store.getState()).at.body).toBeUndefined();
  });
});

describe("attachments", () => {
  const limitsAnd = (send) =>
    stubFetch((method, path, body) => {
      if (path === "/email/limits") return json(200, LIMITS);
      return send(body);
    });

  it("asks the limits once, reads files as base64 and sends them", async () => {
    const fetch = limitsAnd(() => json(200, { messageId: "m1" }));
    const store = storeWith();
    await store.dispatch(addAttachments([new File(["hello"], "hello.txt", { type: "text/plain" })]));
    await store.dispatch(addAttachments([new File([new Uint8Array([0, 255])], "blob")]));
    expect(store.getState().limits.status).toBe("loaded");
    expect(selectCannotSend(store.getState())).toBe("");
    await store.dispatch(sendEmail());
    expect(calls(fetch)).toEqual(["GET /email/limits", "POST /email/send"]);
    expect(sentEmail(fetch).attachments).toEqual([
      { filename: "hello.txt", contentType: "text/plain", content: btoa("hello") },
      { filename: "blob", contentType: "application/octet-stream", content: "AP8=" },
    ]);
    // Sent: the list is empty for the next email.
    expect(store.getState().send.attachments).toEqual([]);
  });

  it("does not read or send a file over a limit, until it is removed", async () => {
    const fetch = limitsAnd(() => json(200, { messageId: "m1" }));
    const store = storeWith();
    await store.dispatch(
      addAttachments([new File(["x".repeat(1001)], "big.txt", { type: "text/plain" }), new File(["MZ"], "run.exe")]),
    );
    const [big, exe] = store.getState().send.attachments;
    expect([big.status, exe.status]).toEqual(["refused", "refused"]);
    expect(big.content).toBeNull();
    expect(selectCannotSend(store.getState())).toBe("Remove the files over a limit to send.");
    await store.dispatch(sendEmail());
    expect(calls(fetch)).toEqual(["GET /email/limits"]);

    store.dispatch(attachmentRemoved(big.id));
    store.dispatch(attachmentRemoved(exe.id));
    expect(selectCannotSend(store.getState())).toBe("");
  });

  it("lists the files without checks when the limits cannot be had", async () => {
    const fetch = stubFetch((method, path) =>
      path === "/email/limits" ? json(404, { errors: { base: "Not found" } }) : json(200, { messageId: "m1" }),
    );
    const store = storeWith();
    await store.dispatch(addAttachments([new File(["MZ"], "run.exe")]));
    expect(store.getState().limits.status).toBe("failed");
    await store.dispatch(sendEmail());
    expect(sentEmail(fetch).attachments).toHaveLength(1);
  });

  it("puts a 422 about a file beside that file", async () => {
    limitsAnd(() =>
      json(422, {
        errors: { "attachments[1].content": "Content is not valid base64", attachments: "Attachments are over 10 MB in total" },
      }),
    );
    const store = storeWith();
    await store.dispatch(addAttachments([new File(["a"], "a.txt"), new File(["b"], "b.txt")]));
    await store.dispatch(sendEmail());
    const second = store.getState().send.attachments[1].id;
    expect(selectSendErrors(store.getState()).at).toEqual({
      [second]: "Content is not valid base64",
      attachments: "Attachments are over 10 MB in total",
    });
    store.dispatch(attachmentRemoved(second));
    expect(selectSendErrors(store.getState()).at).toEqual({});
  });
});
