//! cgroup v2 directories: what cgroup BPF programs attach to and what they govern.
//!
//! A [`Cgroup`] is a child directory this process creates in the cgroup2 hierarchy (found in
//! `/proc/self/mountinfo`, wherever this machine mounts it: `/sys/fs/cgroup` on a pure-v2
//! system, `/sys/fs/cgroup/unified` on a hybrid one). Processes are moved in by pid, or
//! started inside it ([`Cgroup::command`]: the child joins before `execve`, so nothing it does
//! escapes the programs attached to it). Dropping it removes the directory and every cgroup
//! below it, after killing (or, if asked, moving to the parent) the processes still inside:
//! a cgroup outlives the process that made it, so someone has to. [`Cgroup::remover`] hands
//! that clean-up to a signal handler, where destructors do not run.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What to do with the processes still in a cgroup when it is removed (rmdir fails with
/// EBUSY while any process is inside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftovers {
    /// Kill them (`cgroup.kill`, or SIGKILL one by one on kernels before 5.14): the cgroup
    /// held a workload that ends with it. The default.
    Kill,
    /// Move them to the parent cgroup: they live on, outside the programs attached here.
    MoveToParent,
}

/// Why a cgroup could not be found, created, joined or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// No cgroup2 filesystem in `/proc/self/mountinfo` (cgroup BPF programs need cgroup v2).
    #[error("no cgroup2 filesystem is mounted (none in /proc/self/mountinfo); cgroup BPF programs need one: `mount -t cgroup2 none /sys/fs/cgroup`")]
    NotMounted,
    /// A name that is not one directory name.
    #[error("{0:?} is not a cgroup name (one directory name: not empty, no '/', not . or ..)")]
    InvalidName(String),
    /// A file operation on the cgroup tree failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`create cgroup`, `move pid 42 into`, …).
        what: String,
        /// The file or directory.
        path: PathBuf,
        /// The OS's answer.
        #[source]
        source: io::Error,
    },
    /// Processes stayed in the cgroup after they were killed or moved out.
    #[error("cgroup {} still holds processes {pids:?} after {waited:?}; it was not removed", path.display())]
    StillPopulated {
        /// The cgroup.
        path: PathBuf,
        /// What its `cgroup.procs` listed last.
        pids: Vec<u32>,
        /// How long removal waited.
        waited: Duration,
    },
}

crate::error::errno_from_sources!(CgroupError);

fn io_error(what: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    let what = what.into();
    move |source| CgroupError::Io { what, path: path.to_path_buf(), source }
}

/// Where the cgroup2 filesystem is mounted, from `/proc/self/mountinfo` (the mount of the
/// hierarchy's root when there are several).
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let info = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(info).map_err(io_error("read", info))?;
    let mut found = None;
    for line in text.lines() {
        // id parent major:minor root mount-point options [optional…] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else { continue };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(mount_point)) = (fields.get(3), fields.get(4)) else { continue };
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        if *root == "/" {
            return Ok(mount_point);
        }
        found.get_or_insert(mount_point);
    }
    found.ok_or(CgroupError::NotMounted)
}

/// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup v2 directory this process created; removed (with what is below it) on drop.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    dir: std::fs::File,
    id: u64,
    leftovers: Leftovers,
}

impl Cgroup {
    /// Create `name` at the top of the cgroup2 hierarchy ([`cgroup2_mount`]).
    pub fn create(name: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::create_in(&cgroup2_mount()?, name)
    }

    /// Create `name` below the cgroup directory `parent`.
    pub fn create_in(parent: &Path, name: &str) -> Result<Cgroup, CgroupError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(CgroupError::InvalidName(name.to_string()));
        }
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(io_error("create cgroup", &path))?;
        let opened = std::fs::File::open(&path).and_then(|dir| {
            use std::os::unix::fs::MetadataExt;
            let id = dir.metadata()?.ino();
            Ok((dir, id))
        });
        match opened {
            Ok((dir, id)) => Ok(Cgroup { path, dir, id, leftovers: Leftovers::Kill }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(io_error("open cgroup", &path)(e))
            }
        }
    }

    /// Create `name` below this cgroup: programs attached here govern it too (as the attach
    /// flags allow).
    pub fn create_child(&self, name: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::create_in(&self.path, name)
    }

    /// What removal does with processes still inside (default: [`Leftovers::Kill`]).
    pub fn with_leftovers(mut self, leftovers: Leftovers) -> Cgroup {
        self.leftovers = leftovers;
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup's id: what `bpf_get_current_cgroup_id()` returns for a task inside it (on
    /// cgroup v2, the directory's inode number).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Move process `pid` (all its threads) into this cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        let procs = self.path.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io_error(format!("move pid {pid} into"), &procs))
    }

    /// The processes in this cgroup (not below it), from `cgroup.procs`.
    pub fn processes(&self) -> Result<Vec<u32>, CgroupError> {
        read_procs(&self.path)
    }

    /// A `Command` for `program` whose child joins this cgroup before it executes: set
    /// arguments, stdio and environment as usual, then spawn.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command, CgroupError> {
        let procs_path = self.path.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new().write(true).open(&procs_path).map_err(io_error("open", &procs_path))?;
        let mut command = Command::new(program);
        crate::sys::join_cgroup_before_exec(&mut command, OwnedFd::from(procs));
        Ok(command)
    }

    /// A handle that removes this cgroup the way drop does, from anywhere (a Ctrl-C handler:
    /// `std::process::exit` runs no destructor, and a cgroup outlives its creator).
    pub fn remover(&self) -> CgroupRemover {
        CgroupRemover { path: self.path.clone(), leftovers: self.leftovers }
    }

    /// Remove the cgroup now, with the cgroups below it, saying why if it cannot.
    pub fn remove(self) -> Result<(), CgroupError> {
        self.remover().remove()
    }
}

impl AsFd for Cgroup {
    /// The open directory: what cgroup attach (`Program::attach_cgroup`) and cgroup maps take.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.remover().remove();
    }
}

/// Removes one cgroup (and those below it) like [`Cgroup`]'s drop; clone it into a signal
/// handler. Removing what is already gone succeeds.
#[derive(Clone, Debug)]
pub struct CgroupRemover {
    path: PathBuf,
    leftovers: Leftovers,
}

impl CgroupRemover {
    /// A remover for the cgroup directory `path`, whether it exists yet or not: install a
    /// signal handler with it *before* creating the cgroup, and no moment is left in which an
    /// interruption would leave the directory behind.
    pub fn for_path(path: impl Into<PathBuf>, leftovers: Leftovers) -> CgroupRemover {
        CgroupRemover { path: path.into(), leftovers }
    }

    /// Children first, each emptied of processes (killed or moved up), then rmdir; waits up to
    /// 5 s for killed processes to leave.
    pub fn remove(&self) -> Result<(), CgroupError> {
        remove_tree(&self.path, self.leftovers, Instant::now() + Duration::from_secs(5))
    }
}

fn read_procs(dir: &Path) -> Result<Vec<u32>, CgroupError> {
    let procs = dir.join("cgroup.procs");
    let text = std::fs::read_to_string(&procs).map_err(io_error("read", &procs))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

fn remove_tree(dir: &Path, leftovers: Leftovers, deadline: Instant) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("list cgroup", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error("list cgroup", dir))?;
        // The only directories in a cgroup are its child cgroups.
        if entry.file_type().map_err(io_error("list cgroup", dir))?.is_dir() {
            remove_tree(&entry.path(), leftovers, deadline)?;
        }
    }
    let started = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(io_error("remove cgroup", dir)(e)),
        }
        let pids = match read_procs(dir) {
            Ok(pids) => pids,
            Err(CgroupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            return Err(CgroupError::StillPopulated { path: dir.to_path_buf(), pids, waited: started.elapsed() });
        }
        empty(dir, &pids, leftovers);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One attempt at emptying `dir` of `pids`; errors are left for the next rmdir to notice (a
/// process may exit between reading `cgroup.procs` and acting on it).
fn empty(dir: &Path, pids: &[u32], leftovers: Leftovers) {
    match leftovers {
        Leftovers::Kill => {
            if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
                for &pid in pids {
                    let _ = crate::sys::send_signal(pid as i32, libc::SIGKILL);
                }
            }
        }
        Leftovers::MoveToParent => {
            if let Some(parent) = dir.parent() {
                for &pid in pids {
                    let _ = std::fs::write(parent.join("cgroup.procs"), pid.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(super::unescape_mountinfo(r"/mnt/with\040space\134x"), r"/mnt/with space\x");
        assert_eq!(super::unescape_mountinfo(r"/a\04"), r"/a\04");
    }

    #[test]
    fn names_are_one_directory_name() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(matches!(super::Cgroup::create_in("/nonexistent".as_ref(), bad), Err(super::CgroupError::InvalidName(_))));
        }
    }
}
