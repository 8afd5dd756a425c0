import { createAsyncThunk, createSlice } from "@reduxjs/toolkit";
import * as api from "../api.js";
import { formatSize } from "../sizes.js";
import { sessionEnded, signOut } from "./session.js";

// What POST /email/send accepts (GET /email/limits), asked once, when the first file is picked.
// status: idle | loading | loaded | failed. Without limits (an older API, a network failure)
// nothing is checked here: the server's answer still is the authority.
const initialState = { status: "idle", values: null };

export const fetchLimits = createAsyncThunk("limits/fetch", api.apiThunk(api.getEmailLimits), {
  condition: (_arg, { getState }) => ["idle", "failed"].includes(getState().limits.status),
});

const limitsSlice = createSlice({
  name: "limits",
  initialState,
  reducers: {},
  extraReducers: (builder) => {
    builder
      .addCase(fetchLimits.pending, (state) => {
        state.status = "loading";
      })
      .addCase(fetchLimits.fulfilled, (state, action) => {
        state.status = "loaded";
        state.values = action.payload;
      })
      .addCase(fetchLimits.rejected, (state) => {
        state.status = "failed";
      })
      .addCase(signOut.fulfilled, () => initialState)
      .addCase(sessionEnded, () => initialState);
  },
});

export default limitsSlice.reducer;

export const extensionOf = (filename) => {
  const dot = filename.lastIndexOf(".");
  return dot > 0 ? filename.slice(dot + 1).toLowerCase() : "";
};

/**
 * What is wrong with a file on its own (its name, type or size), or null: such a file can
 * never be sent, so it is not even read.
 */
export function fileRefusal({ filename, contentType, size }, limits) {
  if (!limits) return null;
  const extension = extensionOf(filename);
  if (extension && limits.deniedExtensions.map((e) => e.toLowerCase()).includes(extension)) {
    return `Files ending in .${extension} are not allowed`;
  }
  if (limits.deniedContentTypes.map((t) => t.toLowerCase()).includes(contentType.toLowerCase())) {
    return `Files of type ${contentType} are not allowed`;
  }
  if (size > limits.maxAttachmentBytes) {
    return `${formatSize(size)} is over the limit of ${formatSize(limits.maxAttachmentBytes)} for one file`;
  }
  return null;
}

/**
 * {<attachment id>: message} for every attachment that cannot be sent as the list stands:
 * refused on its own, past the number allowed, or past the total size allowed (counted in
 * the list's order over the files within the limits), or unreadable.
 */
export function attachmentProblems(attachments, limits) {
  const problems = {};
  let count = 0;
  let total = 0;
  for (const attachment of attachments) {
    if (attachment.status === "failed") {
      problems[attachment.id] = "Could not read this file";
      continue;
    }
    const refusal = fileRefusal(attachment, limits);
    if (refusal) {
      problems[attachment.id] = refusal;
      continue;
    }
    if (!limits) continue;
    // A file past a limit is left out of the counts, so the message names the files to remove.
    if (count + 1 > limits.maxAttachments) {
      problems[attachment.id] = limits.maxAttachments
        ? `Over the limit of ${limits.maxAttachments} attachments: remove one`
        : "Attachments are not accepted";
    } else if (total + attachment.size > limits.maxAttachmentsBytes) {
      problems[attachment.id] =
        `Over the limit of ${formatSize(limits.maxAttachmentsBytes)} for all attachments together`;
    } else {
      count += 1;
      total += attachment.size;
    }
  }
  return problems;
}
