// Copies the built library to web/static, where the Go binary embeds it and
// serves it at /herald.js.
import { copyFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const from = fileURLToPath(new URL("../dist/herald.js", import.meta.url));
const to = fileURLToPath(new URL("../../static/herald.js", import.meta.url));
copyFileSync(from, to);
console.log(`copied ${from} -> ${to}`);
