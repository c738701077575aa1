// Bundles the chat app into src/autan/web/static, which `autan serve` serves at /.
import { build } from "esbuild";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

const out = "../src/autan/web/static";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: ["src/app.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  outfile: `${out}/app.js`,
  legalComments: "linked",
});

cpSync("src/index.html", `${out}/index.html`);
cpSync("src/favicon.svg", `${out}/favicon.svg`);
const themes =
  `@media (prefers-color-scheme: light) {\n${readFileSync("node_modules/highlight.js/styles/github.min.css", "utf8")}\n}\n` +
  `@media (prefers-color-scheme: dark) {\n${readFileSync("node_modules/highlight.js/styles/github-dark.min.css", "utf8")}\n}\n`;
writeFileSync(`${out}/style.css`, readFileSync("src/style.css", "utf8") + "\n" + themes);
cpSync("node_modules/katex/dist/katex.min.css", `${out}/katex.min.css`);
cpSync("node_modules/katex/dist/fonts", `${out}/fonts`, { recursive: true });
// The API docs at /docs, from Swagger UI's own files: nothing is fetched from a CDN.
mkdirSync(`${out}/docs`);
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css"]) cpSync(`node_modules/swagger-ui-dist/${file}`, `${out}/docs/${file}`);
cpSync("src/docs/index.html", `${out}/docs/index.html`);
cpSync("src/docs/docs.js", `${out}/docs/docs.js`);
console.log(`built the chat app into ${out}`);
