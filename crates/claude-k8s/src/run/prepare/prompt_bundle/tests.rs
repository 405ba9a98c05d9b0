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
fn runtime_names_are_plain_names_only() {
    let dir = scratch("names");
    let s = skill(&dir, "paperclip", "x");
    let cache = dir.join("cache");
    for bad in ["../../x", "/abs", "a/b", ".hidden", "", ".."] {
        let evil = RuntimeSkill {
            runtime_name: bad.into(),
            ..s.clone()
        };
        let err = prepare(&BundleInput {
            instructions: None,
            skills: std::slice::from_ref(&evil),
            cache_dir: &cache,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("not a plain name") && err.contains("paperclipai/paperclip/paperclip"),
            "{bad}: {err}"
        );
    }
    // Nothing was written anywhere: not even the cache directory.
    assert!(!cache.exists());
    assert!(!dir.join("x").exists());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn symlinks_out_of_a_skill_are_neither_followed_nor_copied() {
    let dir = scratch("links");
    let s = skill(&dir, "paperclip", "# skill");
    let src = Path::new(&s.source);
    fs::write(dir.join("server-secret.env"), "JWT_SECRET=do-not-copy").unwrap();
    std::os::unix::fs::symlink(dir.join("server-secret.env"), src.join("leak.md")).unwrap();
    std::os::unix::fs::symlink("/proc/1/environ", src.join("environ.md")).unwrap();
    std::os::unix::fs::symlink("SKILL.md", src.join("alias.md")).unwrap();
    let key_with_links = bundle_key(None, std::slice::from_ref(&s)).unwrap();
    let cache = dir.join("cache");
    let (bundle, _) = prepare(&BundleInput {
        instructions: None,
        skills: std::slice::from_ref(&s),
        cache_dir: &cache,
    })
    .unwrap();
    let copied = Path::new(&bundle.root).join(".claude/skills/paperclip");
    assert_eq!(
        fs::read_to_string(copied.join("alias.md")).unwrap(),
        "# skill",
        "a link inside is copied"
    );
    assert!(!copied.join("leak.md").exists());
    assert!(!copied.join("environ.md").exists());
    // What a link out points at does not reach the key either: changing it changes nothing.
    fs::write(dir.join("server-secret.env"), "JWT_SECRET=changed").unwrap();
    assert_eq!(
        bundle_key(None, std::slice::from_ref(&s)).unwrap(),
        key_with_links
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_cache_directory_swapped_for_a_symlink_is_refused() {
    let dir = scratch("swap");
    let victim = dir.join("instance-secrets");
    fs::create_dir_all(&victim).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir_all(dir.join("companies/co")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("companies/co/claude-k8s-prompt-cache")).unwrap();
    let err = prepare(&BundleInput {
        instructions: Some("hi"),
        skills: &[],
        cache_dir: &dir.join("companies/co/claude-k8s-prompt-cache"),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(
        fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing written through the link"
    );
    assert_eq!(
        fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
        0o700,
        "and no chmod"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn oversized_skill_files_are_a_named_error() {
    let dir = scratch("big");
    let s = skill(&dir, "paperclip", "x");
    let big = fs::File::create(Path::new(&s.source).join("big.bin")).unwrap();
    big.set_len(MAX_SKILL_FILE_BYTES + 1).unwrap();
    let err = bundle_key(None, &[s]).unwrap_err().to_string();
    assert!(
        err.contains("larger than") && err.contains("big.bin"),
        "{err}"
    );
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
