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
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
#[error(
    "cannot write the prompt bundle to {path}: {source}. Hint: the adapter writes it on the shared volume; make {DATA_MOUNT_PATH} writable for the Paperclip server's user"
)]
pub struct BundleError {
    path: String,
    source: io::Error,
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

/// The bundle key: SHA-256 over the instructions text and each skill's key, runtime name and file tree (sorted by
/// runtime name). Reads the skill sources.
pub fn bundle_key(instructions: Option<&str>, skills: &[RuntimeSkill]) -> io::Result<String> {
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
    let mut sorted: Vec<&RuntimeSkill> = skills.iter().collect();
    sorted.sort_by(|a, b| a.runtime_name.cmp(&b.runtime_name));
    for skill in sorted {
        hash.update(format!("skill:{}:{}\n", skill.key, skill.runtime_name).as_bytes());
        hash_tree(
            Path::new(&skill.source),
            &skill.runtime_name,
            &mut hash,
            &mut HashSet::new(),
        )?;
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hash_tree(
    path: &Path,
    rel: &str,
    hash: &mut Sha256,
    seen: &mut HashSet<PathBuf>,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        hash.update(format!("symlink:{rel}\n").as_bytes());
        return match fs::canonicalize(path) {
            Ok(target) => hash_tree(&target, rel, hash, seen),
            Err(_) => {
                hash.update(b"missing\n");
                Ok(())
            }
        };
    }
    if meta.is_dir() {
        hash.update(format!("dir:{rel}\n").as_bytes());
        let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if !seen.insert(real) {
            hash.update(b"loop\n");
            return Ok(());
        }
        for name in sorted_names(path)? {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            hash_tree(&path.join(&name), &child_rel, hash, seen)?;
        }
        return Ok(());
    }
    if meta.is_file() {
        hash.update(format!("file:{rel}\n").as_bytes());
        hash.update(fs::read(path)?);
        hash.update(b"\n");
        return Ok(());
    }
    hash.update(format!("other:{rel}:{:o}\n", meta.permissions().mode()).as_bytes());
    Ok(())
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

/// Writes the bundle unless one with the same key exists; returns it and whether it was reused.
pub fn prepare(input: &BundleInput<'_>) -> Result<(PromptBundle, bool), BundleError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| BundleError { path, source }
    };
    let key = bundle_key(input.instructions, input.skills).map_err(err(input.cache_dir))?;
    let root = input.cache_dir.join(&key);
    let bundle = PromptBundle {
        key: key.clone(),
        root: root.display().to_string(),
        instructions_file: input
            .instructions
            .map(|_| root.join(INSTRUCTIONS_FILE).display().to_string()),
    };
    if root.is_dir() {
        return Ok((bundle, true));
    }
    create_dir(input.cache_dir).map_err(err(input.cache_dir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let staging = input
        .cache_dir
        .join(format!(".{key}.tmp-{}-{nanos}", std::process::id()));
    let built = build(&staging, input);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&staging);
        return Err(err(&staging)(e));
    }
    if let Err(e) = fs::rename(&staging, &root) {
        let _ = fs::remove_dir_all(&staging);
        // Another run wrote the same bundle first: same key, same content.
        if !root.is_dir() {
            return Err(err(&root)(e));
        }
        return Ok((bundle, true));
    }
    Ok((bundle, false))
}

fn build(dir: &Path, input: &BundleInput<'_>) -> io::Result<()> {
    let skills_home = dir.join(".claude").join("skills");
    create_dir(dir)?;
    create_dir(&dir.join(".claude"))?;
    create_dir(&skills_home)?;
    for skill in input.skills {
        let target = skills_home.join(&skill.runtime_name);
        let source = Path::new(&skill.source);
        if source.starts_with(DATA_MOUNT_PATH) {
            std::os::unix::fs::symlink(source, &target)?;
        } else {
            copy_tree(source, &target, &mut HashSet::new())?;
        }
    }
    if let Some(text) = input.instructions {
        let file = dir.join(INSTRUCTIONS_FILE);
        fs::write(&file, text)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
    }
    // Readable by the agent's UID in the pod whatever the server's umask: the bundle holds no secret.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

fn create_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

/// Copies a skill tree, following symlinks (the pod could not follow them); dangling links and loops are skipped.
fn copy_tree(source: &Path, target: &Path, seen: &mut HashSet<PathBuf>) -> io::Result<()> {
    let meta = fs::metadata(source)?;
    if meta.is_file() {
        fs::copy(source, target)?;
        return fs::set_permissions(target, fs::Permissions::from_mode(0o644));
    }
    if !meta.is_dir() || !seen.insert(fs::canonicalize(source)?) {
        return Ok(());
    }
    create_dir(target)?;
    for name in sorted_names(source)? {
        let child = source.join(&name);
        if fs::metadata(&child).is_err() {
            continue; // a dangling link
        }
        copy_tree(&child, &target.join(&name), seen)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "claude-k8s-bundle-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn skill(dir: &Path, name: &str, body: &str) -> RuntimeSkill {
        let src = dir.join("src").join(name);
        fs::create_dir_all(src.join("references")).unwrap();
        fs::write(src.join("SKILL.md"), body).unwrap();
        fs::write(src.join("references/api.md"), "GET /api/agents/me").unwrap();
        RuntimeSkill {
            key: format!("paperclipai/paperclip/{name}"),
            runtime_name: name.into(),
            source: src.display().to_string(),
        }
    }

    #[test]
    fn directive_and_manifest_are_claude_locals() {
        let text = instructions_with_directive("/paperclip/a/AGENTS.md", "# Be kind\n");
        assert_eq!(
            text,
            "# Be kind\n\nThe above agent instructions were loaded from /paperclip/a/AGENTS.md. Resolve any relative \
             file references from /paperclip/a/. This base directory is authoritative for sibling instruction files \
             such as ./HEARTBEAT.md, ./SOUL.md, and ./TOOLS.md; do not resolve those from the parent agent directory."
        );
        assert_eq!(
            combined_instructions(Some("I".into()), Some("## M")).as_deref(),
            Some("I\n\n## M")
        );
        assert_eq!(
            combined_instructions(None, Some("## M")).as_deref(),
            Some("## M")
        );
        assert_eq!(combined_instructions(None, Some("")), None);
    }

    #[test]
    fn cache_dir_is_on_the_shared_volume() {
        assert_eq!(
            cache_dir(Some("/paperclip/instances/default"), "co"),
            Path::new("/paperclip/instances/default/companies/co/claude-k8s-prompt-cache")
        );
        // An instance root elsewhere (the server's own disk) is not visible to pods.
        assert_eq!(
            cache_dir(Some("/home/node/.paperclip/instances/default"), "co"),
            Path::new("/paperclip/claude-k8s/companies/co/claude-k8s-prompt-cache")
        );
        assert!(cache_dir(Some("/paperclipx/i"), "co").starts_with("/paperclip/claude-k8s"));
    }

    #[test]
    fn key_changes_with_instructions_and_skill_content_only() {
        let dir = scratch("key");
        let s = skill(&dir, "paperclip", "v1");
        let k1 = bundle_key(Some("A"), std::slice::from_ref(&s)).unwrap();
        assert_eq!(k1, bundle_key(Some("A"), std::slice::from_ref(&s)).unwrap());
        assert_eq!(k1.len(), 64);
        assert_ne!(k1, bundle_key(Some("B"), std::slice::from_ref(&s)).unwrap());
        assert_ne!(k1, bundle_key(None, std::slice::from_ref(&s)).unwrap());
        assert_ne!(k1, bundle_key(Some("A"), &[]).unwrap());
        fs::write(Path::new(&s.source).join("references/api.md"), "changed").unwrap();
        assert_ne!(k1, bundle_key(Some("A"), std::slice::from_ref(&s)).unwrap());
        let missing = RuntimeSkill {
            source: "/nonexistent/skill".into(),
            ..s
        };
        assert!(bundle_key(None, &[missing]).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn prepare_copies_skills_writes_instructions_and_reuses_an_unchanged_bundle() {
        let dir = scratch("prepare");
        let s = skill(&dir, "paperclip", "# Paperclip skill");
        let cache = dir.join("cache");
        let input = BundleInput {
            instructions: Some("hello"),
            skills: std::slice::from_ref(&s),
            cache_dir: &cache,
        };
        let (bundle, reused) = prepare(&input).unwrap();
        assert!(!reused);
        let root = Path::new(&bundle.root);
        assert_eq!(root, cache.join(&bundle.key));
        assert_eq!(
            fs::read_to_string(bundle.instructions_file.as_ref().unwrap()).unwrap(),
            "hello"
        );
        let copied = root.join(".claude/skills/paperclip");
        assert!(
            !fs::symlink_metadata(&copied)
                .unwrap()
                .file_type()
                .is_symlink(),
            "copied: the source is outside /paperclip"
        );
        assert_eq!(
            fs::read_to_string(copied.join("SKILL.md")).unwrap(),
            "# Paperclip skill"
        );
        assert_eq!(
            fs::read_to_string(copied.join("references/api.md")).unwrap(),
            "GET /api/agents/me"
        );
        assert_eq!(
            fs::metadata(root).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let (again, reused) = prepare(&input).unwrap();
        assert!(reused);
        assert_eq!(again, bundle);
        // No staging directory is left behind.
        let names: Vec<String> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, std::slice::from_ref(&bundle.key));
        // No instructions: no file, still a bundle to add.
        let (bare, _) = prepare(&BundleInput {
            instructions: None,
            skills: &[],
            cache_dir: &cache,
        })
        .unwrap();
        assert_eq!(bare.instructions_file, None);
        assert!(Path::new(&bare.root).join(".claude/skills").is_dir());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unwritable_cache_is_a_clear_error() {
        let err = prepare(&BundleInput {
            instructions: Some("x"),
            skills: &[],
            cache_dir: Path::new("/proc/claude-k8s-cannot-write-here"),
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/proc/claude-k8s-cannot-write-here"),
            "{text}"
        );
        assert!(text.contains("writable"), "{text}");
    }
}
