import { configureStore } from "@reduxjs/toolkit";
import limits from "./features/limits.js";
import nav from "./features/nav.js";
import providers from "./features/providers.js";
import recent from "./features/recent.js";
import send from "./features/send.js";
import session, { signOutOn401 } from "./features/session.js";
import status from "./features/status.js";

export function makeStore(preloadedState) {
  return configureStore({
    reducer: { session, nav, send, limits, status, recent, providers },
    preloadedState,
    middleware: (getDefaultMiddleware) => getDefaultMiddleware().concat(signOutOn401),
  });
}
