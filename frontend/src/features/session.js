import { createAction, createAsyncThunk, createSlice, isRejectedWithValue } from "@reduxjs/toolkit";
import * as api from "../api.js";

export const SESSION_ENDED = "Your session has ended: please sign in again";

// status: "checking" (GET /session in flight) | "signedOut" | "signedIn"
const initialState = { status: "checking", user: null, pending: false, errors: {}, signOutError: null };

export const loadSession = createAsyncThunk("session/load", api.apiThunk(api.getSession));
export const signIn = createAsyncThunk(
  "session/signIn",
  api.apiThunk(({ username, password }) => api.signIn(username, password)),
);
export const signOut = createAsyncThunk("session/signOut", api.apiThunk(api.signOut));

// The session ended elsewhere (signed out in another tab, expired): an API call answered 401.
// Every slice forgets the user's data on it, as on signOut.fulfilled.
export const sessionEnded = createAction("session/ended");

// A 401 from the session's own calls means something else: "not signed in" for GET /session
// at start-up, "wrong username or password" for POST /session. They keep their own handling.
const OWN_401 = [loadSession.rejected.type, signIn.rejected.type];

/** Middleware: any other rejected API thunk answering 401 signs the app out (sessionEnded). */
export const signOutOn401 = (store) => (next) => (action) => {
  const result = next(action);
  if (isRejectedWithValue(action) && action.payload?.status === 401 && !OWN_401.includes(action.type)) {
    store.dispatch(sessionEnded());
  }
  return result;
};

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
      .addCase(sessionEnded, (state) =>
        // Only once: late 401s of requests still in flight must not replace a newer banner.
        state.status === "signedIn"
          ? { ...initialState, status: "signedOut", errors: { base: SESSION_ENDED } }
          : state,
      )
      .addCase(signOut.rejected, (state, action) => {
        state.signOutError = api.errorsOfAction(action).base || "Could not sign out";
      });
  },
});

export const { signInErrorsCleared } = sessionSlice.actions;
export default sessionSlice.reducer;
