// ESLint's recommended rules for the extension's own code (`npm run lint`, run by .ci/run).
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["dist/", "node_modules/", "model/", "faces/"] },
  js.configs.recommended,
  {
    // The extension: a service worker or event page, an offscreen document and injected page code.
    files: ["src/**/*.js"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: { ...globals.browser, ...globals.serviceworker, ...globals.webextensions },
    },
  },
  {
    // Node: the build script and the test drivers.
    files: ["build.mjs", "eslint.config.js", "test/**/*.{js,mjs}"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: { ...globals.node },
    },
  },
  {
    // Test drivers that hand functions to Playwright, run in the extension's pages.
    files: ["test/drive.mjs", "test/browser.mjs", "test/scenario.mjs", "test/scan.mjs", "test/firefox.mjs"],
    languageOptions: {
      globals: { ...globals.browser, ...globals.webextensions, onContextMenuClick: "readonly" },
    },
  },
  {
    // The test-only scripts added to a copy of the Firefox build (test/firefox.mjs).
    files: ["test/firefox-bridge/*.js"],
    languageOptions: { globals: { ...globals.browser, ...globals.webextensions } },
  },
  {
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_", caughtErrors: "none" }],
    },
  },
];
