import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/react";
import { afterEach, beforeEach, vi } from "vitest";
import { forgetCsrfToken } from "../src/api.js";
import { clearCsrfCookie } from "./helpers.jsx";

// A page of the same origin normally has the CSRF cookie (GET /session sets it); tests of
// the token endpoint clear it with clearCsrfCookie().
beforeEach(() => {
  document.cookie = "csrftoken=test-cookie-token";
});

afterEach(() => {
  cleanup();
  vi.useRealTimers();
  vi.unstubAllGlobals();
  vi.unstubAllEnvs();
  forgetCsrfToken(); // the API module keeps a fetched token between calls
  window.location.hash = "";
  clearCsrfCookie();
});
