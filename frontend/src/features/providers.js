import { createAsyncThunk, createSlice } from "@reduxjs/toolkit";
import * as api from "../api.js";
import { sessionEnded, signOut } from "./session.js";

export const PROVIDERS_REFRESH_MS = 5000;

const initialState = { items: [], loading: false, loaded: false, error: null, updatedAt: null };

export const fetchProviders = createAsyncThunk(
  "providers/fetch",
  api.apiThunk(async () => ({ items: await api.getProviders(), fetchedAt: new Date().toISOString() })),
  {
    // A slow answer is not asked for again on top of itself.
    condition: (_arg, { getState }) => !getState().providers.loading,
  },
);

const providersSlice = createSlice({
  name: "providers",
  initialState,
  reducers: {},
  extraReducers: (builder) => {
    builder
      .addCase(fetchProviders.pending, (state) => {
        state.loading = true;
      })
      .addCase(fetchProviders.fulfilled, (state, action) => {
        state.loading = false;
        state.loaded = true;
        state.error = null;
        state.items = action.payload.items;
        state.updatedAt = action.payload.fetchedAt;
      })
      .addCase(fetchProviders.rejected, (state, action) => {
        state.loading = false;
        state.error = api.errorsOfAction(action).base || "Could not load providers";
      })
      .addCase(signOut.fulfilled, () => initialState)
      .addCase(sessionEnded, () => initialState);
  },
});

export default providersSlice.reducer;
