import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` forwards the API to the Django server of `make run` (same origin for the browser).
const backend = process.env.GOMAIL_BACKEND || "http://127.0.0.1:8000";
const proxy = Object.fromEntries(["/session", "/email", "/providers"].map((path) => [path, backend]));

// Django (whitenoise) serves dist/ at the site root: index.html at "/", the bundle under /assets/.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir: "dist", emptyOutDir: true },
  server: { proxy },
  test: {
    environment: "jsdom",
    setupFiles: ["./tests/setup.js"],
    include: ["tests/**/*.test.{js,jsx}"],
  },
});
