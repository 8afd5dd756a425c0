import { createSlice } from "@reduxjs/toolkit";

// In-app navigation mirrored in the URL's hash (only "/" serves index.html):
// #/send, #/recent, #/providers, #/email/<messageId>.
export const VIEWS = ["send", "recent", "providers", "email"];

export function parseHash(hash) {
  const [view, id] = hash.replace(/^#\/?/, "").split("/");
  if (view === "email" && id) return { view, messageId: decodeURIComponent(id) };
  if (view === "recent" || view === "providers") return { view, messageId: null };
  return { view: "send", messageId: null };
}

export function hashFor(view, messageId) {
  return view === "email" ? `#/email/${encodeURIComponent(messageId)}` : `#/${view}`;
}

const navSlice = createSlice({
  name: "nav",
  initialState: { view: "send", messageId: null },
  reducers: {
    navigated: (_state, action) => action.payload,
  },
});

export const { navigated } = navSlice.actions;
export default navSlice.reducer;
