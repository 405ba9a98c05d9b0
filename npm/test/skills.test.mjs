// Skills and the prompt bundle's inputs as claude_local resolves them (Paperclip's own helpers): which runtime
// skills a run mounts, the library manifest, the instance root, the UI's skills snapshot, and the module flags
// that make the Paperclip UI show the instructions editor and the skills panel.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import createServerAdapter from "../src/index.js";
import { buildExecuteParams } from "../src/params.js";
import { loadServerUtils } from "../src/prompt.js";
import { listSkills, loadManifestBuilder, promptBundleParams, syncSkills } from "../src/skills.js";

let dir;
let config;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-skills-"));
  for (const name of ["paperclip", "review"]) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, "SKILL.md"), `---\nname: ${name}\ndescription: ${name} skill\n---\n`);
  }
  config = {
    paperclipRuntimeSkills: [
      { key: "paperclipai/paperclip/paperclip", runtimeName: "paperclip", source: path.join(dir, "paperclip") },
      { key: "acme/review", runtimeName: "review", source: path.join(dir, "review") },
      { key: "acme/unused", runtimeName: "unused", source: path.join(dir, "unused") },
      { key: "acme/broken", runtimeName: "broken", source: path.join(dir, "broken"), sourceStatus: "missing", missingDetail: "version deleted" },
    ],
    paperclipSkillSync: { desiredSkills: ["review", "acme/broken"] },
  };
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("promptBundleParams", () => {
  it("mounts the operational skill and the desired ones, skips unavailable files with a warning", async () => {
    const u = await loadServerUtils();
    const p = await promptBundleParams(config, u, await loadManifestBuilder(), { PAPERCLIP_HOME: "/paperclip" });
    assert.deepEqual(
      p.skills.map((s) => [s.key, s.runtimeName]),
      [["paperclipai/paperclip/paperclip", "paperclip"], ["acme/review", "review"]],
    );
    assert.equal(p.skills[0].source, path.join(dir, "paperclip"));
    assert.equal(p.warnings.length, 1);
    assert.match(p.warnings[0], /acme\/broken.*not mounted: version deleted/);
    assert.equal(p.instanceRoot, "/paperclip/instances/default");
    assert.match(p.skillLibraryManifest, /^## Company skill library/);
    assert.match(p.skillLibraryManifest, /- acme\/review — enabled/);
    assert.match(p.skillLibraryManifest, /- acme\/unused — installed, not enabled for you/);
    assert.match(p.skillLibraryManifest, /- acme\/broken — enabled but unavailable: version deleted/);
  });

  it("has no skills and no manifest when Paperclip offers none", async () => {
    const u = await loadServerUtils();
    const p = await promptBundleParams({ paperclipRuntimeSkills: [] }, u, await loadManifestBuilder(), {
      PAPERCLIP_HOME: "/paperclip",
      PAPERCLIP_INSTANCE_ID: "blue",
    });
    assert.deepEqual(p.skills, []);
    assert.equal(p.skillLibraryManifest, null);
    assert.equal(p.instanceRoot, "/paperclip/instances/blue");
  });

  it("travels in ExecuteParams", async () => {
    const p = await buildExecuteParams({
      runId: "r", agent: { id: "a", companyId: "c", name: "A" }, runtime: {}, config, context: {}, authToken: "t",
    });
    assert.deepEqual(p.promptBundle.skills.map((s) => s.runtimeName), ["paperclip", "review"]);
  });
});

describe("skills panel", () => {
  it("listSkills and syncSkills report a per-run (ephemeral) snapshot for claude_k8s", async () => {
    for (const snapshot of [await listSkills({ config }), await syncSkills({ config }, ["acme/review"])]) {
      assert.equal(snapshot.adapterType, "claude_k8s");
      assert.equal(snapshot.supported, true);
      assert.equal(snapshot.mode, "ephemeral");
      const state = Object.fromEntries(snapshot.entries.map((e) => [e.key, e.state]));
      assert.equal(state["acme/review"], "configured");
      assert.equal(state["acme/unused"], "available");
      assert.equal(state["acme/broken"], "missing");
    }
  });
});

describe("module flags", () => {
  it("declares claude_local's instructions, skills and tool-delivery capabilities", () => {
    const a = createServerAdapter();
    assert.equal(a.supportsInstructionsBundle, true);
    assert.equal(a.instructionsPathKey, "instructionsFilePath");
    assert.equal(a.requiresMaterializedRuntimeSkills, false);
    assert.equal(a.runtimeToolDelivery, "native_mcp");
    assert.equal(typeof a.listSkills, "function");
    assert.equal(typeof a.syncSkills, "function");
  });
});
