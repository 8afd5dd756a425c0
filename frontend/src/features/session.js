import { createAsyncThunk, createSlice } from "@reduxjs/toolkit";
import * as api from "../api.js";

// status: "checking" (GET /session in flight) | "signedOut" | "signedIn"
const initialState = { status: "checking", user: null, pending: false, errors: {}, signOutError: null };

export const loadSession = createAsyncThunk("session/load", api.apiThunk(api.getSession));
export const signIn = createAsyncThunk(
  "session/signIn",
  api.apiThunk(({ username, password }) => api.signIn(username, password)),
);
export const signOut = createAsyncThunk("session/signOut", api.apiThunk(api.signOut));

const sessionSlice = createSlice({
  name: "session",
  initialState,
  reducers: {
    signInErrorsCleared(state) {
      state.errors = {};
    },
  },
  extraReducers: (builder) => {
    builder
      .addCase(loadSession.fulfilled, (state, action) => {
        state.status = "signedIn";
        state.user = action.payload;
      })
      .addCase(loadSession.rejected, (state, action) => {
        state.status = "signedOut";
        state.user = null;
        // 401 just means "not signed in"; anything else is worth saying on the sign-in page.
        state.errors = action.payload?.status === 401 ? {} : api.errorsOfAction(action);
      })
      .addCase(signIn.pending, (state) => {
        state.pending = true;
        state.errors = {};
      })
      .addCase(signIn.fulfilled, (state, action) => {
        state.pending = false;
        state.status = "signedIn";
        state.user = action.payload;
      })
      .addCase(signIn.rejected, (state, action) => {
        state.pending = false;
        state.errors = api.errorsOfAction(action);
      })
      .addCase(signOut.pending, (state) => {
        state.signOutError = null;
      })
      .addCase(signOut.fulfilled, () => ({ ...initialState, status: "signedOut" }))
      .addCase(signOut.rejected, (state, action) => {
        state.signOutError = api.errorsOfAction(action).base || "Could not sign out";
      });
  },
});

export const { signInErrorsCleared } = sessionSlice.actions;
export default sessionSlice.reducer;
