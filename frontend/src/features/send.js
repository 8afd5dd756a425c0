import { createAsyncThunk, createSelector, createSlice, nanoid } from "@reduxjs/toolkit";
import * as api from "../api.js";
import { attachmentProblems, fetchLimits, fileRefusal } from "./limits.js";
import { sessionEnded, signOut } from "./session.js";

// The form's one-value fields. Recipients, metadata and attachments are lists of rows, each
// with an id of its own, so that a row's error stays with it when another row is removed.
export const FIELDS = ["fromName", "fromEmail", "subject", "body", "html", "tags"];
export const RECIPIENT_KINDS = ["to", "cc", "bcc"];
// Errors about a list as a whole ("recipients": too many in total), shown beside the list.
export const GROUPS = ["to", "cc", "bcc", "recipients", "metadata", "attachments"];

const EMPTY = Object.fromEntries(FIELDS.map((name) => [name, ""]));
const recipientRow = (id = `r-${nanoid()}`) => ({ id, email: "", name: "" });
const emptyForm = () => ({
  fields: EMPTY,
  recipients: { to: [recipientRow()], cc: [], bcc: [] },
  metadata: [],
  // {id, filename, contentType, size, status: reading | ready | refused | failed, content}:
  // content is the file's base64 once read; a refused file (fileRefusal) is never read.
  attachments: [],
});

// errors: the last answer's messages, keyed by where they are shown: a field's name, a row's
// id (`<id>.email`, `<id>.name`, or `<id>` for the row as a whole), a group, or anything else
// (base included) for the banner.
const initialState = { ...emptyForm(), sending: false, errors: {}, messageId: null };

/** The tags input, "a, b ,c", as the API's list. */
export const tagList = (text) =>
  text
    .split(",")
    .map((tag) => tag.trim())
    .filter(Boolean);

const recipientOf = ({ email, name }) => (name ? { email, name } : { email });

/**
 * The API's email object of the form. One To recipient and no Cc or Bcc is sent in the
 * original format (toEmail, toName), as every version of the API takes it; more in the lists
 * (to, cc, bcc). Optional parts are left out when empty.
 */
export function emailOf(form) {
  const { fields, recipients, metadata, attachments } = form;
  const { to, cc, bcc } = recipients;
  const email = { fromName: fields.fromName, fromEmail: fields.fromEmail };
  if (to.length === 1 && cc.length === 0 && bcc.length === 0) {
    Object.assign(email, { toName: to[0].name, toEmail: to[0].email });
  } else {
    email.to = to.map(recipientOf);
    if (cc.length) email.cc = cc.map(recipientOf);
    if (bcc.length) email.bcc = bcc.map(recipientOf);
  }
  email.subject = fields.subject;
  // The body is required unless there is HTML: without either, the API says so.
  if (fields.body || !fields.html) email.body = fields.body;
  if (fields.html) email.html = fields.html;
  const tags = tagList(fields.tags);
  if (tags.length) email.tags = tags;
  const pairs = metadata.filter((row) => row.key || row.value);
  if (pairs.length) email.metadata = Object.fromEntries(pairs.map((row) => [row.key, row.value]));
  if (attachments.length) {
    email.attachments = attachments.map(({ filename, contentType, content }) => ({
      filename,
      contentType,
      content,
    }));
  }
  return email;
}

// Sends the form as it is in the store.
export const sendEmail = createAsyncThunk(
  "send/sendEmail",
  api.apiThunk((_arg, { getState }) => api.sendEmail(emailOf(getState().send))),
  { condition: (_arg, { getState }) => !getState().send.sending && !selectCannotSend(getState()) },
);

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    // A data: URL, "data:<type>;base64,<content>": the content is what follows the comma.
    reader.onload = () => resolve(String(reader.result).slice(String(reader.result).indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/**
 * Add picked files (a FileList or File[]) to the attachments and read each as base64. The
 * limits are asked first (once per session); a file they refuse on its own is listed, with
 * its message, but not read.
 */
export const addAttachments = (files) => async (dispatch, getState) => {
  const added = Array.from(files, (file) => ({
    file,
    attachment: {
      id: `f-${nanoid()}`,
      filename: file.name,
      contentType: file.type || "application/octet-stream",
      size: file.size,
    },
  }));
  if (!added.length) return;
  dispatch(attachmentsAdded(added.map(({ attachment }) => attachment)));
  await dispatch(fetchLimits());
  await Promise.all(
    added.map(async ({ file, attachment }) => {
      if (fileRefusal(attachment, getState().limits.values)) {
        dispatch(attachmentRead({ id: attachment.id, status: "refused" }));
        return;
      }
      try {
        const content = await readAsBase64(file);
        dispatch(attachmentRead({ id: attachment.id, status: "ready", content }));
      } catch {
        dispatch(attachmentRead({ id: attachment.id, status: "failed" }));
      }
    }),
  );
};

// Where an answer's error key is shown in the form as it was sent (rows in the order sent).
const LIST_PLACE = /^(to|cc|bcc|attachments|metadata)\[(\d+)\](?:\.(\w+))?$/;

function placeOf(key, form) {
  if (FIELDS.includes(key) || GROUPS.includes(key)) return key;
  if (key === "toEmail" || key === "toName") {
    return `${form.recipients.to[0].id}.${key === "toEmail" ? "email" : "name"}`;
  }
  if (/^tags\[\d+\]$/.test(key)) return "tags";
  if (key.startsWith("metadata.")) {
    // Metadata errors are keyed by the metadata's own key: the row that has it.
    const row = form.metadata.find((r) => r.key === key.slice("metadata.".length));
    return row ? row.id : "metadata";
  }
  const match = LIST_PLACE.exec(key);
  if (!match) return null;
  const [, list, index, part] = match;
  const rows = list === "attachments" ? form.attachments : list === "metadata" ? form.metadata : form.recipients[list];
  const row = rows?.[Number(index)];
  if (!row) return null;
  // A recipient's email or name beside that input; anything else beside the row (a file's
  // content, filename or type beside the file).
  return list in form.recipients && ["email", "name"].includes(part) ? `${row.id}.${part}` : row.id;
}

function placeErrors(errors, form) {
  const placed = {};
  for (const [key, message] of Object.entries(errors)) {
    const place = placeOf(key, form) ?? key;
    placed[place] = placed[place] ? `${placed[place]} ${message}` : message;
  }
  return placed;
}

const withoutErrorsOf = (errors, id) =>
  Object.fromEntries(Object.entries(errors).filter(([key]) => key !== id && !key.startsWith(`${id}.`)));

const sendSlice = createSlice({
  name: "send",
  initialState,
  reducers: {
    fieldChanged(state, action) {
      const { name, value } = action.payload;
      state.fields[name] = value;
      delete state.errors[name]; // that message was about the old value
      // "Body or HTML is required" is answered on the body: either field answers it.
      if (name === "html") delete state.errors.body;
    },
    recipientAdded: {
      reducer(state, action) {
        state.recipients[action.payload.kind].push(recipientRow(action.payload.id));
      },
      prepare: (kind) => ({ payload: { kind, id: `r-${nanoid()}` } }),
    },
    recipientChanged(state, action) {
      const { kind, id, part, value } = action.payload;
      const row = state.recipients[kind].find((r) => r.id === id);
      if (!row) return;
      row[part] = value;
      delete state.errors[`${id}.${part}`];
      delete state.errors[id];
    },
    recipientRemoved(state, action) {
      const { kind, id } = action.payload;
      // The first To recipient stays: an email needs one.
      if (kind === "to" && state.recipients.to.length === 1) return;
      state.recipients[kind] = state.recipients[kind].filter((r) => r.id !== id);
      state.errors = withoutErrorsOf(state.errors, id);
      delete state.errors.recipients;
      delete state.errors[kind];
    },
    metadataAdded: {
      reducer(state, action) {
        state.metadata.push({ id: action.payload, key: "", value: "" });
      },
      prepare: () => ({ payload: `m-${nanoid()}` }),
    },
    metadataChanged(state, action) {
      const { id, part, value } = action.payload;
      const row = state.metadata.find((r) => r.id === id);
      if (!row) return;
      row[part] = value;
      delete state.errors[id];
      delete state.errors.metadata;
    },
    metadataRemoved(state, action) {
      state.metadata = state.metadata.filter((r) => r.id !== action.payload);
      delete state.errors[action.payload];
      delete state.errors.metadata;
    },
    attachmentsAdded(state, action) {
      for (const attachment of action.payload) {
        state.attachments.push({ ...attachment, status: "reading", content: null });
      }
      delete state.errors.attachments;
    },
    attachmentRead(state, action) {
      const { id, status, content = null } = action.payload;
      const attachment = state.attachments.find((a) => a.id === id);
      if (attachment) Object.assign(attachment, { status, content });
    },
    attachmentRemoved(state, action) {
      state.attachments = state.attachments.filter((a) => a.id !== action.payload);
      delete state.errors[action.payload];
      delete state.errors.attachments;
    },
  },
  extraReducers: (builder) => {
    builder
      .addCase(sendEmail.pending, (state) => {
        state.sending = true;
        state.errors = {};
        state.messageId = null;
      })
      .addCase(sendEmail.fulfilled, (state, action) => {
        state.sending = false;
        state.messageId = action.payload.messageId;
        // Keep the sender for the next email; never send the same one twice by accident.
        const { fromName, fromEmail } = state.fields;
        Object.assign(state, emptyForm());
        state.fields = { ...EMPTY, fromName, fromEmail };
      })
      .addCase(sendEmail.rejected, (state, action) => {
        state.sending = false;
        state.errors = placeErrors(api.errorsOfAction(action), state);
      })
      .addCase(signOut.fulfilled, () => ({ ...initialState, ...emptyForm() }))
      .addCase(sessionEnded, () => ({ ...initialState, ...emptyForm() }));
  },
});

export const {
  fieldChanged,
  recipientAdded,
  recipientChanged,
  recipientRemoved,
  metadataAdded,
  metadataChanged,
  metadataRemoved,
  attachmentsAdded,
  attachmentRead,
  attachmentRemoved,
} = sendSlice.actions;

/** {<attachment id>: message} of the files that cannot be sent (limits.attachmentProblems). */
export const selectAttachmentProblems = createSelector(
  [(state) => state.send.attachments, (state) => state.limits.values],
  attachmentProblems,
);

/** Why Send is off: a file over a limit or still being read ("" when it can send). */
export const selectCannotSend = createSelector(
  [(state) => state.send.attachments, selectAttachmentProblems],
  (attachments, problems) => {
    if (Object.keys(problems).length) return "Remove the files over a limit to send.";
    if (attachments.some((a) => a.status === "reading")) return "Reading the files…";
    return "";
  },
);

// {at: {<place>: message}, banner: message | null}: `at` answers a field's name, a row's
// `<id>.email` / `<id>.name` / `<id>`, or a group. An error about a place the form does not
// show (a server-side rename, say) goes to the banner rather than nowhere.
export const selectSendErrors = createSelector([(state) => state.send], (send) => {
  const rows = new Set([
    ...RECIPIENT_KINDS.flatMap((kind) => send.recipients[kind].map((r) => r.id)),
    ...send.metadata.map((r) => r.id),
    ...send.attachments.map((a) => a.id),
  ]);
  const at = {};
  const banner = [];
  for (const [place, message] of Object.entries(send.errors)) {
    if (FIELDS.includes(place) || GROUPS.includes(place) || rows.has(place.split(".")[0])) {
      at[place] = message;
    } else if (place === "base") banner.unshift(message);
    else banner.push(message);
  }
  return { at, banner: banner.length ? banner.join(" ") : null };
});

export default sendSlice.reducer;
