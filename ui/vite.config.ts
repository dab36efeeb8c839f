import { defineConfig } from "vitest/config";

// Preact through esbuild's automatic JSX runtime: no Babel, no extra plugin.
export default defineConfig({
  base: "./",
  clearScreen: false,
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  server: { port: 1420, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // WebKitGTK 2.4x (Tauri on Linux) and Safari 15+ on macOS.
    target: ["es2021", "safari15"],
    sourcemap: false,
  },
  test: {
    environment: "happy-dom",
    include: ["tests/unit/**/*.test.{ts,tsx}"],
  },
});
