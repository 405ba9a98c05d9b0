//! Reading and writing files on the server without being steered by what an agent planted.
//!
//! An agent writes anything, symlinks included, wherever its pod can write: today the whole shared volume. So the
//! server never follows a name it did not check:
//! - **Reads** ([`read_regular_file`], [`read_within`]) open the path without reading (`O_PATH`), look at what was
//!   actually opened (its type, its size, its real path through `/proc/self/fd`), and only then read it, at most
//!   a bounded number of bytes. A FIFO, a device, `/proc/1/environ` behind a symlink, or a 10 GiB file is refused
//!   before a byte is read. Errors name what is wrong, never what the file holds.
//! - **Writes** ([`SafeDir`]) go through directory file descriptors opened one component at a time with
//!   `O_NOFOLLOW` below a trusted root (the shared volume's mount point): a directory swapped for a symlink is
//!   refused, new files are created exclusively (`O_EXCL`, never over an existing name or a planted link) under
//!   unpredictable names, and renamed into place within the same directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::run::prepare::pod_facts::DATA_MOUNT_PATH;

/// Why a file was not read or written. Never holds any of the file's content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open it ({0})")]
    Open(io::ErrorKind),
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is larger than {0} bytes")]
    TooLarge(u64),
    #[error("it resolves to a place outside {0} (a symlink pointing out?)")]
    Outside(String),
    #[error("{0} is a symlink or not a directory; refusing to follow it")]
    NotADirectory(String),
    #[error("`{0}` is not a plain file name")]
    BadName(String),
    #[error("{0}")]
    Io(io::ErrorKind),
}

impl From<rustix::io::Errno> for FileError {
    fn from(e: rustix::io::Errno) -> Self {
        FileError::Io(io::Error::from(e).kind())
    }
}

/// Reads a regular file of at most `max` bytes, following symlinks (an operator's own path).
pub fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    Ok(read_checked(path, max, |_| Ok(()))?.0)
}

/// Reads a regular file of at most `max` bytes whose real path (after every symlink) lies under `root`'s real
/// path; returns the bytes and that real path.
pub fn read_within(path: &Path, root: &Path, max: u64) -> Result<(Vec<u8>, PathBuf), FileError> {
    let real_root = std::fs::canonicalize(root).map_err(|e| FileError::Open(e.kind()))?;
    read_checked(path, max, |real| {
        if real.starts_with(&real_root) {
            Ok(())
        } else {
            Err(FileError::Outside(root.display().to_string()))
        }
    })
}

fn read_checked(
    path: &Path,
    max: u64,
    check: impl Fn(&Path) -> Result<(), FileError>,
) -> Result<(Vec<u8>, PathBuf), FileError> {
    // O_PATH opens nothing of the file itself: a FIFO does not block, a device is not touched.
    let handle = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FileError::Open(io::Error::from(e).kind()))?;
    let stat = rustix::fs::fstat(&handle)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(FileError::NotRegular);
    }
    let proc_path = format!("/proc/self/fd/{}", handle.as_raw_fd());
    let real = std::fs::read_link(&proc_path).map_err(|e| FileError::Open(e.kind()))?;
    check(&real)?;
    // procfs reports a size of 0 for files it generates; the read below is bounded either way.
    if stat.st_size as u64 > max {
        return Err(FileError::TooLarge(max));
    }
    // Reopening the very inode through the descriptor: nothing can be swapped in between.
    let file = File::open(&proc_path).map_err(|e| FileError::Open(e.kind()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::Io(e.kind()))?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge(max));
    }
    Ok((bytes, real))
}

/// A plain file name: no separator, not `.` or `..`, not empty, printable ASCII without a leading dot.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+@".contains(c))
}

/// A directory opened without following symlinks below a trusted root; every operation is relative to it.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl SafeDir {
    /// Opens `path` (absolute), creating missing directories with mode 0755 when `create` is set. Components
    /// below the trusted root (the shared volume's mount point for paths on it, else `/`) must be real
    /// directories: a symlink among them is an error, not a detour.
    pub fn open(path: &Path, create: bool) -> Result<Self, FileError> {
        let trusted = if path.starts_with(DATA_MOUNT_PATH) {
            Path::new(DATA_MOUNT_PATH)
        } else {
            Path::new("/")
        };
        let rel = path
            .strip_prefix(trusted)
            .map_err(|_| FileError::NotADirectory(path.display().to_string()))?;
        let fd = rustix::fs::open(
            trusted,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FileError::Open(io::Error::from(e).kind()))?;
        let mut dir = Self {
            fd,
            path: trusted.to_owned(),
        };
        for c in rel.components() {
            match c {
                Component::Normal(name) => dir = dir.subdir(name, create)?,
                Component::CurDir => {}
                _ => return Err(FileError::NotADirectory(path.display().to_string())),
            }
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> Result<Self, FileError> {
        Ok(Self {
            fd: self.fd.try_clone().map_err(|e| FileError::Io(e.kind()))?,
            path: self.path.clone(),
        })
    }

    /// The child directory `name`, created (0755) when missing and `create` is set.
    pub fn subdir(&self, name: &OsStr, create: bool) -> Result<Self, FileError> {
        one_component(name)?;
        let path = self.path.join(name);
        let open = || {
            rustix::fs::openat(
                &self.fd,
                name,
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open() {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open().map_err(|_| FileError::NotADirectory(path.display().to_string()))?
            }
            // ELOOP: the name is a symlink; ENOTDIR: a file.
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(FileError::NotADirectory(path.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self { fd, path })
    }

    /// Whether `name` is a directory here (a symlink is not).
    pub fn has_dir(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|s| {
            rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory
        })
    }

    /// A new directory with an unpredictable name starting with `prefix`; it did not exist before.
    pub fn create_unique_dir(&self, prefix: &str) -> Result<(String, SafeDir), FileError> {
        for _ in 0..16 {
            let name = format!("{prefix}{}", random_suffix()?);
            match rustix::fs::mkdirat(&self.fd, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    let dir = self.subdir(OsStr::new(&name), false)?;
                    return Ok((name, dir));
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FileError::Io(io::ErrorKind::AlreadyExists))
    }

    /// Writes a new file (it must not exist: never over a planted name or link) with `mode`.
    pub fn write_new(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), FileError> {
        one_component(OsStr::new(name))?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        // The process umask must not decide who in the pod can read it.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        let mut file = File::from(fd);
        file.write_all(bytes).map_err(|e| FileError::Io(e.kind()))?;
        Ok(())
    }

    /// Replaces `name` with `bytes` atomically: a new file under an unpredictable name, then a rename within this
    /// directory (a planted symlink at `name` is replaced, never followed).
    pub fn replace_file(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), FileError> {
        if !is_plain_name(name) {
            return Err(FileError::BadName(name.to_owned()));
        }
        let tmp = format!(".tmp-{}", random_suffix()?);
        if let Err(e) = self.write_new(&tmp, bytes, mode) {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name).inspect_err(|_| {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        })?;
        Ok(())
    }

    /// Reads `name` here: a regular file (not a symlink) of at most `max` bytes.
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, FileError> {
        one_component(OsStr::new(name))?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FileError::Open(io::Error::from(e).kind()))?;
        let stat = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(FileError::NotRegular);
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::Io(e.kind()))?;
        if bytes.len() as u64 > max {
            return Err(FileError::TooLarge(max));
        }
        Ok(bytes)
    }

    /// A symlink `name` here pointing at `target`.
    pub fn symlink(&self, target: &Path, name: &str) -> Result<(), FileError> {
        one_component(OsStr::new(name))?;
        rustix::fs::symlinkat(target, &self.fd, name)?;
        Ok(())
    }

    /// Sets this directory's own mode.
    pub fn chmod(&self, mode: u32) -> Result<(), FileError> {
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// Gives this directory to `uid`:`gid` if root owns it (a server running as root made it), so that the agent's
    /// user can write in it; a directory someone else owns is left as it is.
    pub fn give_root_owned_to(&self, uid: u32, gid: u32) -> Result<(), FileError> {
        if rustix::fs::fstat(&self.fd)?.st_uid == 0 {
            rustix::fs::fchown(
                &self.fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        Ok(())
    }

    /// Renames `from` to `to`, both in this directory.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FileError> {
        one_component(OsStr::new(from))?;
        one_component(OsStr::new(to))?;
        rustix::fs::renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }

    /// Removes `name` and everything below it, never following a symlink out.
    pub fn remove_tree(&self, name: &str) {
        if one_component(OsStr::new(name)).is_err() {
            return;
        }
        if rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).is_ok() {
            return;
        }
        if let Ok(child) = self.subdir(OsStr::new(name), false) {
            let names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(child.fd.as_fd())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_bytes().to_vec())
                .filter(|n| n != b"." && n != b"..")
                .collect();
            for n in names {
                if let Ok(n) = std::str::from_utf8(&n) {
                    child.remove_tree(n);
                } else {
                    let _ =
                        rustix::fs::unlinkat(&child.fd, OsStr::from_bytes(&n), AtFlags::empty());
                }
            }
        }
        let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR);
    }
}

/// One name within a directory: never a path that climbs or descends.
fn one_component(name: &OsStr) -> Result<(), FileError> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) || b == b"." || b == b".." {
        return Err(FileError::BadName(name.to_string_lossy().into_owned()));
    }
    Ok(())
}

/// 128 bits from the kernel, hex.
fn random_suffix() -> Result<String, FileError> {
    let mut bytes = [0u8; 16];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("claude-k8s-confined-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_refuse_symlinks_out_of_the_root_fifos_devices_and_big_files() {
        let dir = scratch("read");
        let inside = dir.join("instructions");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("real.md"), "# Agent").unwrap();
        symlink("real.md", inside.join("AGENTS.md")).unwrap();
        symlink("/proc/1/environ", inside.join("environ.md")).unwrap();
        symlink("/etc/hostname", inside.join("host.md")).unwrap();
        std::fs::write(dir.join("outside.md"), "secret").unwrap();
        symlink("../outside.md", inside.join("up.md")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            inside.join("fifo.md").as_path(),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A symlink inside the folder to a file inside it is fine.
        let (text, real) = read_within(&inside.join("AGENTS.md"), &inside, 1024).unwrap();
        assert_eq!(text, b"# Agent");
        assert!(real.ends_with("instructions/real.md"));
        for (name, expect) in [
            ("environ.md", "outside"),
            ("host.md", "outside"),
            ("up.md", "outside"),
            ("fifo.md", "not a regular file"),
            ("missing.md", "cannot open"),
        ] {
            let err = read_within(&inside.join(name), &inside, 1024)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{name}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
        assert!(matches!(
            read_within(&inside.join("real.md"), &inside, 3),
            Err(FileError::TooLarge(3))
        ));
        assert!(matches!(
            read_regular_file(Path::new("/dev/zero"), 10),
            Err(FileError::NotRegular)
        ));
        // procfs files report size 0; the read is still bounded.
        assert!(matches!(
            read_regular_file(Path::new("/proc/self/environ"), 1),
            Err(FileError::TooLarge(1)) | Ok(_)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writes_never_follow_a_planted_symlink() {
        let dir = scratch("write");
        let victim = dir.join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("config.json"), "precious").unwrap();
        // A directory on the way replaced by a symlink: refused, nothing written there.
        symlink(&victim, dir.join("sessions")).unwrap();
        let err = SafeDir::open(&dir.join("sessions"), true).unwrap_err();
        assert!(matches!(err, FileError::NotADirectory(_)), "{err}");
        let err = SafeDir::open(&dir.join("sessions/deeper"), true).unwrap_err();
        assert!(matches!(err, FileError::NotADirectory(_)), "{err}");
        // A file name planted as a symlink: replace_file swaps the link, the target stays untouched.
        let d = SafeDir::open(&dir.join("real/sub"), true).unwrap();
        symlink(victim.join("config.json"), dir.join("real/sub/record.json")).unwrap();
        d.replace_file("record.json", b"{}", 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(victim.join("config.json")).unwrap(),
            "precious"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("real/sub/record.json")).unwrap(),
            "{}"
        );
        assert_eq!(
            std::fs::metadata(dir.join("real/sub/record.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        // write_new never writes over anything; reads refuse links.
        assert!(d.write_new("record.json", b"x", 0o644).is_err());
        symlink(victim.join("config.json"), dir.join("real/sub/link.json")).unwrap();
        assert!(d.write_new("link.json", b"x", 0o644).is_err());
        assert!(d.read("link.json", 100).is_err());
        assert_eq!(d.read("record.json", 100).unwrap(), b"{}");
        assert_eq!(
            std::fs::read_to_string(victim.join("config.json")).unwrap(),
            "precious"
        );
        for bad in ["../x", "a/b", "", ".."] {
            assert!(d.replace_file(bad, b"x", 0o644).is_err(), "{bad}");
        }
        // Unique directories, removed whole without following links out of them.
        let (name, staging) = d.create_unique_dir(".stage-").unwrap();
        assert_ne!(name, d.create_unique_dir(".stage-").unwrap().0);
        staging.write_new("f", b"1", 0o600).unwrap();
        staging.symlink(&victim, "out").unwrap();
        d.remove_tree(&name);
        assert!(!d.has_dir(&name));
        assert!(victim.join("config.json").exists());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.join("real/sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn plain_names() {
        for ok in ["paperclip", "my-skill_2", "a.b", "x@1"] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../../x",
            "/abs",
            "a/b",
            ".hidden",
            "a b",
            "a\nb",
            &"x".repeat(129),
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
