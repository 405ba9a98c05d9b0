// Registers the claude_k8s adapter baked into this image with Paperclip, as the init container of
// deploy/paperclip.yaml: the record in $PAPERCLIP_HOME/adapter-plugins.json that `POST /api/adapters/install`
// with {"packageName": <dir>, "isLocalPath": true} would write, so the server loads the package in place when it
// starts. Other adapters' records are kept. Before writing, it checks what the server will do with the package
// (import it, call createServerAdapter()) and that the bundled binary runs, so a broken image fails here, named,
// instead of as a missing adapter type later.
//
//   node register-adapter.mjs [PACKAGE_DIR]     (default /opt/paperclip-adapter-claude-k8s)
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const dir = path.resolve(process.argv[2] ?? "/opt/paperclip-adapter-claude-k8s");
const home = process.env.PAPERCLIP_HOME || "/paperclip";
const store = path.join(home, "adapter-plugins.json");

function fail(message) {
  console.error(`register-adapter: ${message}`);
  process.exit(1);
}

const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
const exp = pkg.exports?.["."];
const entry = typeof exp === "string" ? exp : (exp?.import ?? exp?.default ?? pkg.main ?? "index.js");
let adapter;
try {
  adapter = (await import(pathToFileURL(path.join(dir, entry)).href)).createServerAdapter();
} catch (err) {
  fail(`${dir} does not load as a Paperclip adapter: ${err.stack ?? err}`);
}
if (!adapter?.type) fail(`createServerAdapter() of ${dir} returned no type`);
let binary;
try {
  binary = execFileSync(path.join(dir, "bin", "claude-k8s"), ["--version"], { encoding: "utf8" }).trim();
} catch (err) {
  fail(`the adapter's binary does not run here: ${err.message}`);
}

let records = [];
if (fs.existsSync(store)) {
  try {
    records = JSON.parse(fs.readFileSync(store, "utf8"));
  } catch (err) {
    fail(`${store} is not JSON (${err.message}); fix or remove it`);
  }
  if (!Array.isArray(records)) fail(`${store} is not a list of adapter records`);
}
const record = {
  packageName: dir,
  localPath: dir,
  version: pkg.version,
  type: adapter.type,
  installedAt: new Date().toISOString(),
};
const kept = records.filter((r) => r?.type !== adapter.type && r?.packageName !== dir);
fs.mkdirSync(home, { recursive: true });
const tmp = `${store}.${process.pid}.tmp`;
fs.writeFileSync(tmp, `${JSON.stringify([...kept, record], null, 2)}\n`);
fs.renameSync(tmp, store);
console.log(`register-adapter: ${adapter.type} ${pkg.version} (${binary}) from ${dir} registered in ${store}`);
