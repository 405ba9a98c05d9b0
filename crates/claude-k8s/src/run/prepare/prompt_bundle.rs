//! The run's prompt bundle, as claude_local's `claude-prompt-cache`: the agent's instructions (the file at
//! `instructionsFilePath`, a path directive and the company skill-library manifest) in `agent-instructions.md`, and
//! `.claude/skills/<runtimeName>` for each runtime skill, in a directory named by the hash of all of it.
//!
//! Difference a pod forces: the bundle lives on the shared volume (`/paperclip`), where every Job pod sees it at
//! the same path, and a skill whose source is outside that volume (the server's node_modules) is copied in, not
//! symlinked (a pod could not follow the link). Skills already on the volume are symlinked as claude_local does.
//! The directory is built under a temporary name and renamed into place, so a pod never sees half a bundle and an
//! unchanged bundle is reused as it is.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::confined::{FileError, SafeDir};
use crate::run::prepare::pod_facts::DATA_MOUNT_PATH;
use crate::serve::protocol::RuntimeSkill;

pub const INSTRUCTIONS_FILE: &str = "agent-instructions.md";

/// A prepared bundle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptBundle {
    /// The content hash; saved in `sessionParams.promptBundleKey` and compared before a resume.
    pub key: String,
    /// The bundle directory (`--add-dir`).
    pub root: String,
    /// `agent-instructions.md` in it, when there are instructions or a manifest (`--append-system-prompt-file`).
    pub instructions_file: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "cannot write the prompt bundle to {path}: {source}. Hint: the adapter writes it on the shared volume; make {DATA_MOUNT_PATH} writable for the Paperclip server's user"
    )]
    Write { path: String, source: FileError },
    #[error("runtime skill `{key}` cannot be used: {why}")]
    Skill { key: String, why: String },
}

/// claude_local's instructions text: the file, then the path directive that anchors relative references to the
/// file's own directory. Pure.
pub fn instructions_with_directive(path: &str, raw: &str) -> String {
    let dir = Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{raw}\nThe above agent instructions were loaded from {path}. Resolve any relative file references from \
         {dir}/. This base directory is authoritative for sibling instruction files such as ./HEARTBEAT.md, \
         ./SOUL.md, and ./TOOLS.md; do not resolve those from the parent agent directory."
    )
}

/// The whole `agent-instructions.md`: the instructions (with their directive) and the skill-library manifest,
/// separated by a blank line; `None` when there is neither. Pure.
pub fn combined_instructions(
    instructions: Option<String>,
    manifest: Option<&str>,
) -> Option<String> {
    let manifest = manifest.filter(|m| !m.is_empty());
    match (instructions, manifest) {
        (Some(i), Some(m)) => Some(format!("{i}\n\n{m}")),
        (Some(i), None) => Some(i),
        (None, Some(m)) => Some(m.to_owned()),
        (None, None) => None,
    }
}

/// Where bundles of a company live: under Paperclip's instance root when that is on the shared volume (the usual
/// case, `PAPERCLIP_HOME=/paperclip`), else under `/paperclip/claude-k8s`. The directory name differs from
/// claude_local's (`claude-prompt-cache`), whose skills are symlinks a pod cannot follow. Pure.
pub fn cache_dir(instance_root: Option<&str>, company_id: &str) -> PathBuf {
    let on_volume = |p: &&str| Path::new(p).starts_with(DATA_MOUNT_PATH);
    let base = instance_root
        .filter(on_volume)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(DATA_MOUNT_PATH).join("claude-k8s"));
    let company = if company_id.is_empty() {
        "_"
    } else {
        company_id
    };
    base.join("companies")
        .join(company)
        .join("claude-k8s-prompt-cache")
}

/// Limits of what a skill tree may hold: a skill is a few markdown files, not a data set.
pub const MAX_SKILL_FILE_BYTES: u64 = 8 * 1024 * 1024;
pub const MAX_SKILL_TREE_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_SKILL_ENTRIES: usize = 10_000;

/// One entry of a skill tree as read on the server, in sorted pre-order. `rel` is the path below the skill's root
/// (empty for the root itself).
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Dir(String),
    File(String, Vec<u8>),
    /// A symlink to something inside the skill's tree: its target's entries follow under the same `rel`.
    Symlink(String),
    Dangling,
    /// A symlink out of the skill's tree: not followed, not copied.
    Outside,
    Loop,
    Other(String, u32),
}

/// A skill's tree, read once, for the key and the copy alike.
struct SkillTree<'a> {
    skill: &'a RuntimeSkill,
    entries: Vec<Entry>,
}

/// Reads every skill's tree, confined to that skill's own source directory: a symlink inside it is followed
/// (copied as what it points at), one pointing out of it is skipped, special files are skipped, and sizes are
/// bounded. Runtime names must be plain names (they become a directory name in the bundle).
fn read_skills(skills: &[RuntimeSkill]) -> Result<Vec<SkillTree<'_>>, BundleError> {
    let mut sorted: Vec<&RuntimeSkill> = skills.iter().collect();
    sorted.sort_by(|a, b| a.runtime_name.cmp(&b.runtime_name));
    sorted
        .into_iter()
        .map(|skill| {
            let bad = |why: String| BundleError::Skill {
                key: skill.key.chars().take(200).collect(),
                why,
            };
            if !crate::confined::is_plain_name(&skill.runtime_name) {
                return Err(bad(
                    "its runtime name is not a plain name (letters, digits, `-`, `_`, `.`; no `/`, no leading \
                     `.`, at most 128 characters)"
                        .into(),
                ));
            }
            let source = Path::new(&skill.source);
            let root = fs::canonicalize(source).map_err(|e| BundleError::Write {
                path: skill.source.clone(),
                source: crate::confined::FileError::Open(e.kind()),
            })?;
            let mut walk = Walk {
                root: &root,
                entries: Vec::new(),
                bytes: 0,
                seen: HashSet::new(),
            };
            walk.visit(source, "").map_err(bad)?;
            Ok(SkillTree {
                skill,
                entries: walk.entries,
            })
        })
        .collect()
}

struct Walk<'a> {
    root: &'a Path,
    entries: Vec<Entry>,
    bytes: u64,
    seen: HashSet<PathBuf>,
}

impl Walk<'_> {
    fn visit(&mut self, path: &Path, rel: &str) -> Result<(), String> {
        if self.entries.len() >= MAX_SKILL_ENTRIES {
            return Err(format!(
                "it has more than {MAX_SKILL_ENTRIES} files and directories"
            ));
        }
        let io = |e: io::Error| format!("cannot read {}: {}", path.display(), e.kind());
        let meta = fs::symlink_metadata(path).map_err(io)?;
        if meta.file_type().is_symlink() {
            self.entries.push(Entry::Symlink(rel.to_owned()));
            return match fs::canonicalize(path) {
                Ok(target) if target.starts_with(self.root) => self.visit(&target, rel),
                Ok(_) => {
                    self.entries.push(Entry::Outside);
                    Ok(())
                }
                Err(_) => {
                    self.entries.push(Entry::Dangling);
                    Ok(())
                }
            };
        }
        if meta.is_dir() {
            self.entries.push(Entry::Dir(rel.to_owned()));
            let real = fs::canonicalize(path).map_err(io)?;
            if !self.seen.insert(real) {
                self.entries.push(Entry::Loop);
                return Ok(());
            }
            for name in sorted_names(path).map_err(io)? {
                let child_rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                self.visit(&path.join(&name), &child_rel)?;
            }
            return Ok(());
        }
        if meta.is_file() {
            let (bytes, _) = crate::confined::read_within(path, self.root, MAX_SKILL_FILE_BYTES)
                .map_err(|e| format!("cannot read {rel}: {e}"))?;
            self.bytes += bytes.len() as u64;
            if self.bytes > MAX_SKILL_TREE_BYTES {
                return Err(format!("it holds more than {MAX_SKILL_TREE_BYTES} bytes"));
            }
            self.entries.push(Entry::File(rel.to_owned(), bytes));
            return Ok(());
        }
        self.entries
            .push(Entry::Other(rel.to_owned(), meta.permissions().mode()));
        Ok(())
    }
}

/// The bundle key: SHA-256 over the instructions text and each skill's key, runtime name and file tree (sorted by
/// runtime name). Reads the skill sources.
pub fn bundle_key(
    instructions: Option<&str>,
    skills: &[RuntimeSkill],
) -> Result<String, BundleError> {
    Ok(key_of(instructions, &read_skills(skills)?))
}

fn key_of(instructions: Option<&str>, trees: &[SkillTree<'_>]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"paperclip-claude-prompt-bundle:v1\n");
    match instructions {
        Some(text) => {
            hash.update(b"instructions\n");
            hash.update(text.as_bytes());
            hash.update(b"\n");
        }
        None => hash.update(b"instructions:none\n"),
    }
    for tree in trees {
        let name = &tree.skill.runtime_name;
        hash.update(format!("skill:{}:{name}\n", tree.skill.key).as_bytes());
        let full = |rel: &str| {
            if rel.is_empty() {
                name.clone()
            } else {
                format!("{name}/{rel}")
            }
        };
        for entry in &tree.entries {
            match entry {
                Entry::Dir(rel) => hash.update(format!("dir:{}\n", full(rel)).as_bytes()),
                Entry::File(rel, bytes) => {
                    hash.update(format!("file:{}\n", full(rel)).as_bytes());
                    hash.update(bytes);
                    hash.update(b"\n");
                }
                Entry::Symlink(rel) => hash.update(format!("symlink:{}\n", full(rel)).as_bytes()),
                Entry::Dangling => hash.update(b"missing\n"),
                Entry::Outside => hash.update(b"outside\n"),
                Entry::Loop => hash.update(b"loop\n"),
                Entry::Other(rel, mode) => {
                    hash.update(format!("other:{}:{mode:o}\n", full(rel)).as_bytes())
                }
            }
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// What [`prepare`] needs: the instructions text (already combined), the skills to mount, where bundles live.
#[derive(Debug, Clone)]
pub struct BundleInput<'a> {
    pub instructions: Option<&'a str>,
    pub skills: &'a [RuntimeSkill],
    pub cache_dir: &'a Path,
}

/// Writes the bundle unless one with the same key exists; returns it and whether it was reused. Every directory
/// on the way is opened without following symlinks ([`SafeDir`]): an agent that replaced one with a link to
/// Paperclip's own files gets an error, not a bundle written (or a chmod done) there.
pub fn prepare(input: &BundleInput<'_>) -> Result<(PromptBundle, bool), BundleError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| BundleError::Write { path, source }
    };
    let trees = read_skills(input.skills)?;
    let key = key_of(input.instructions, &trees);
    let root = input.cache_dir.join(&key);
    let bundle = PromptBundle {
        key: key.clone(),
        root: root.display().to_string(),
        instructions_file: input
            .instructions
            .map(|_| root.join(INSTRUCTIONS_FILE).display().to_string()),
    };
    let cache = SafeDir::open(input.cache_dir, true).map_err(err(input.cache_dir))?;
    if cache.has_dir(&key) {
        return Ok((bundle, true));
    }
    cache.chmod(0o755).map_err(err(input.cache_dir))?;
    let (staging_name, staging) = cache
        .create_unique_dir(&format!(".{key}.tmp-"))
        .map_err(err(input.cache_dir))?;
    if let Err(e) = build(&staging, input, &trees) {
        cache.remove_tree(&staging_name);
        return Err(err(staging.path())(e));
    }
    if let Err(e) = cache.rename(&staging_name, &key) {
        cache.remove_tree(&staging_name);
        // Another run wrote the same bundle first: same key, same content.
        if !cache.has_dir(&key) {
            return Err(err(&root)(e));
        }
        return Ok((bundle, true));
    }
    Ok((bundle, false))
}

fn build(dir: &SafeDir, input: &BundleInput<'_>, trees: &[SkillTree<'_>]) -> Result<(), FileError> {
    let skills_home = dir
        .subdir(OsStr::new(".claude"), true)?
        .subdir(OsStr::new("skills"), true)?;
    for tree in trees {
        let name = tree.skill.runtime_name.as_str();
        let source = Path::new(&tree.skill.source);
        if source.starts_with(DATA_MOUNT_PATH) {
            skills_home.symlink(source, name)?;
            continue;
        }
        let target = skills_home.subdir(OsStr::new(name), true)?;
        target.chmod(0o755)?;
        for entry in &tree.entries {
            match entry {
                Entry::Dir(rel) if !rel.is_empty() => {
                    let d = open_rel(&target, rel, true)?;
                    d.chmod(0o755)?;
                }
                Entry::File(rel, bytes) => {
                    let (parent, file) = match rel.rsplit_once('/') {
                        Some((p, f)) => (open_rel(&target, p, true)?, f),
                        None => (target.try_clone()?, rel.as_str()),
                    };
                    // A symlink and its target may both appear: the first copy wins.
                    match parent.write_new(file, bytes, 0o644) {
                        Ok(()) => {}
                        Err(FileError::Io(io::ErrorKind::AlreadyExists)) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(text) = input.instructions {
        dir.write_new(INSTRUCTIONS_FILE, text.as_bytes(), 0o644)?;
    }
    // Readable by the agent's UID in the pod whatever the server's umask: the bundle holds no secret.
    dir.chmod(0o755)
}

fn open_rel(base: &SafeDir, rel: &str, create: bool) -> Result<SafeDir, FileError> {
    let mut d = base.try_clone()?;
    for part in rel.split('/') {
        d = d.subdir(OsStr::new(part), create)?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
