import { createAsyncThunk, createSelector, createSlice } from "@reduxjs/toolkit";
import * as api from "../api.js";
import { sessionEnded, signOut } from "./session.js";

// The form's fields, in the order they are shown (and focused on errors).
export const FIELDS = ["fromName", "fromEmail", "toName", "toEmail", "subject", "body"];
const EMPTY = Object.fromEntries(FIELDS.map((name) => [name, ""]));

// errors: the last answer's {<field>: message} and/or {base: message}, as the API sent them.
const initialState = { fields: EMPTY, sending: false, errors: {}, messageId: null };

// Sends the form's fields as they are in the store.
export const sendEmail = createAsyncThunk(
  "send/sendEmail",
  api.apiThunk((_arg, { getState }) => api.sendEmail(getState().send.fields)),
  { condition: (_arg, { getState }) => !getState().send.sending },
);

const sendSlice = createSlice({
  name: "send",
  initialState,
  reducers: {
    fieldChanged(state, action) {
      const { name, value } = action.payload;
      state.fields[name] = value;
      delete state.errors[name]; // that message was about the old value
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
        state.fields = { ...EMPTY, fromName: state.fields.fromName, fromEmail: state.fields.fromEmail };
      })
      .addCase(sendEmail.rejected, (state, action) => {
        state.sending = false;
        state.errors = api.errorsOfAction(action);
      })
      .addCase(signOut.fulfilled, () => initialState)
      .addCase(sessionEnded, () => initialState);
  },
});

export const { fieldChanged } = sendSlice.actions;

// {fields: {<field>: message}, banner: message | null}; an error about a key the form does not
// show (a server-side rename, say) goes to the banner rather than nowhere.
export const selectSendErrors = createSelector([(state) => state.send.errors], (errors) => {
  const fields = {};
  const banner = [];
  for (const [key, message] of Object.entries(errors)) {
    if (FIELDS.includes(key)) fields[key] = message;
    else if (key === "base") banner.unshift(message);
    else banner.push(message);
  }
  return { fields, banner: banner.length ? banner.join(" ") : null };
});

export default sendSlice.reducer;
