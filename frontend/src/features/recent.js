import { createAsyncThunk, createSlice } from "@reduxjs/toolkit";
import * as api from "../api.js";
import { sessionEnded, signOut } from "./session.js";

export const RECENT_LIMIT = 50;

// filter: "" (all) or one status; items: newest first, as GET /email/recent answers.
const initialState = { filter: "", items: [], loading: false, loaded: false, error: null, requestId: null };

export const fetchRecent = createAsyncThunk(
  "recent/fetch",
  api.apiThunk((status) => api.getRecentEmails({ status, limit: RECENT_LIMIT })),
);

const recentSlice = createSlice({
  name: "recent",
  initialState,
  reducers: {
    filterChanged(state, action) {
      state.filter = action.payload;
    },
  },
  extraReducers: (builder) => {
    builder
      .addCase(fetchRecent.pending, (state, action) => {
        state.loading = true;
        state.requestId = action.meta.requestId;
      })
      .addCase(fetchRecent.fulfilled, (state, action) => {
        if (action.meta.requestId !== state.requestId) return; // a newer request won
        state.loading = false;
        state.loaded = true;
        state.error = null;
        state.items = action.payload;
      })
      .addCase(fetchRecent.rejected, (state, action) => {
        if (action.meta.requestId !== state.requestId) return;
        state.loading = false;
        state.error = api.errorsOfAction(action).base || "Could not load recent emails";
      })
      .addCase(signOut.fulfilled, () => initialState)
      .addCase(sessionEnded, () => initialState);
  },
});

export const { filterChanged } = recentSlice.actions;
export default recentSlice.reducer;
