import { createAsyncThunk, createSlice } from "@reduxjs/toolkit";
import * as api from "../api.js";
import { sessionEnded, signOut } from "./session.js";

export const STATUSES = ["queued", "sending", "sent", "failed", "dead"];
export const FINAL_STATUSES = ["sent", "dead"];
export const POLL_INTERVAL_MS = 1000;

export const isFinal = (email) => Boolean(email) && FINAL_STATUSES.includes(email.status);

// byId: {<messageId>: {email, error}}; following: {<messageId>: token of the live poll loop}.
const initialState = { byId: {}, following: {} };

export const fetchStatus = createAsyncThunk("status/fetch", api.apiThunk(api.getEmail));

let lastToken = 0;

/**
 * Follow an email's status: GET /email/<id> now and every `intervalMs` until the status is
 * final (sent or dead), the email is not ours to see (401/403/404), or stopFollowing(id).
 * Other failures (network, 5xx) are shown and retried on the next tick.
 */
export const followEmail =
  (messageId, { intervalMs = POLL_INTERVAL_MS } = {}) =>
  async (dispatch, getState) => {
    const token = ++lastToken;
    dispatch(followStarted({ messageId, token }));
    const stillMine = () => getState().status.following[messageId] === token;
    for (;;) {
      const action = await dispatch(fetchStatus(messageId));
      if (!stillMine()) return;
      const gone = fetchStatus.rejected.match(action) && [401, 403, 404].includes(action.payload?.status);
      if (gone || isFinal(getState().status.byId[messageId]?.email)) {
        dispatch(stopFollowing(messageId));
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
      if (!stillMine()) return;
    }
  };

const statusSlice = createSlice({
  name: "status",
  initialState,
  reducers: {
    followStarted(state, action) {
      state.following[action.payload.messageId] = action.payload.token;
    },
    stopFollowing(state, action) {
      delete state.following[action.payload];
    },
  },
  extraReducers: (builder) => {
    builder
      .addCase(fetchStatus.fulfilled, (state, action) => {
        state.byId[action.meta.arg] = { email: action.payload, error: null };
      })
      .addCase(fetchStatus.rejected, (state, action) => {
        const entry = state.byId[action.meta.arg] || { email: null };
        entry.error = api.errorsOfAction(action).base || "Could not load the status";
        state.byId[action.meta.arg] = entry;
      })
      .addCase(signOut.fulfilled, () => initialState)
      .addCase(sessionEnded, () => initialState);
  },
});

export const { followStarted, stopFollowing } = statusSlice.actions;
export default statusSlice.reducer;
