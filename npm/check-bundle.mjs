// Checks the entry bundle npm/pack.sh made (run by pack.sh before `npm pack`):
//   node npm/check-bundle.mjs <esbuild metafile> <bundle> <source entry> <package.json>
// - the bundle imports nothing but Node's builtins and the package's dependencies (no sibling module a reload
//   could take from an earlier version's files);
// - it loads, and exports the names the source entry exports; its createServerAdapter() returns an adapter with
//   the same keys; it reports the package's version.
// Exits 1 with every problem on stderr.
import fs from "node:fs";
import { builtinModules } from "node:module";
import { pathToFileURL } from "node:url";

const [metaPath, bundlePath, sourcePath, pkgPath] = process.argv.slice(2);
if (!pkgPath) {
  console.error("usage: check-bundle.mjs <metafile> <bundle> <source entry> <package.json>");
  process.exit(2);
}
const pkg = JSON.parse(fs.readFileSync(pkgPath, "utf8"));
const deps = Object.keys(pkg.dependencies ?? {});
const allowed = (p) =>
  p.startsWith("node:") || builtinModules.includes(p) || deps.some((d) => p === d || p.startsWith(`${d}/`));

const problems = [];
for (const output of Object.values(JSON.parse(fs.readFileSync(metaPath, "utf8")).outputs)) {
  for (const i of output.imports) {
    if (!i.external || !allowed(i.path)) {
      problems.push(`the bundle imports ${i.path} (${i.kind}), which is neither a builtin nor a dependency`);
    }
  }
}

const names = (o) => Object.keys(o).sort().join(", ");
const bundle = await import(pathToFileURL(bundlePath).href);
const source = await import(pathToFileURL(sourcePath).href);
if (names(bundle) !== names(source)) {
  problems.push(`the bundle exports [${names(bundle)}], the source entry [${names(source)}]`);
}
const adapterOf = (m) => (typeof m.createServerAdapter === "function" ? m.createServerAdapter() : {});
const [fromBundle, fromSource] = [adapterOf(bundle), adapterOf(source)];
if (!fromSource.type || names(fromBundle) !== names(fromSource)) {
  problems.push(`the bundle's adapter has [${names(fromBundle)}], the source's [${names(fromSource)}]`);
}
if (bundle.version !== pkg.version) problems.push(`the bundle says version ${bundle.version}, package.json ${pkg.version}`);

if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
