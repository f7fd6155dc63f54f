//! BPF iterators (`bpf_iter`): a tracing program the kernel runs once per object of a kind
//! (task, task_file, map element, …) while user space reads a file; what the program writes
//! with `bpf_seq_write` / `bpf_seq_printf` is the file's content.
//!
//! 1. Load a `ProgType::Tracing` program with expected attach type `trace_iter` and the BTF id
//!    of the iterator's `FUNC` in vmlinux BTF (`bpf_iter_task` for `task`): [`load_options`].
//!    Its context is `struct bpf_iter__<target>` (`meta`, then the object, e.g. `task`, which is
//!    NULL once at the end).
//! 2. Create the iterator link: [`Program::attach_iter`] (`BPF_LINK_CREATE` with attach type
//!    `BPF_TRACE_ITER`, and for some targets an `iter_info` naming a map, task or cgroup).
//! 3. Open a reader: [`open`] (`BPF_ITER_CREATE`), a [`File`] whose `read` runs the program.
//!
//! ```no_run
//! # fn f(asm: &bpfkit::insn::Assembled) -> Result<(), bpfkit::attach::ProbeError> {
//! use bpfkit::attach::iter::{self, IterScope};
//! use bpfkit::prog::Program;
//! let prog = Program::load(asm, &[], &iter::load_options("dump_tasks", "task")?)?;
//! let link = prog.attach_iter(&IterScope::All)?;
//! let text = String::from_utf8_lossy(&iter::read_to_end(&link)?).into_owned();
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::probe::{sys_error, ProbeError};
use super::link::{Link, LinkError};
use crate::core_btf::{Btf, Kind};
use crate::prog::{AttachType, LoadOptions, ProgType, Program};
use crate::sys::{self, Cmd, IterCgroupInfo, IterCreateAttr, IterInfoLink, IterMapInfo, IterTaskInfo, LinkCreateAttr};

/// Which objects an iterator link covers (`union bpf_iter_link_info`).
#[derive(Clone, Copy, Debug)]
pub enum IterScope<'a> {
    /// Every object of the kind (no `iter_info`).
    All,
    /// The elements of one map (`bpf_map_elem`, `bpf_sk_storage_map`, …).
    Map(BorrowedFd<'a>),
    /// One thread (task iterators).
    Thread(u32),
    /// The threads of one process.
    Process(u32),
    /// The process behind a pidfd.
    ProcessFd(BorrowedFd<'a>),
    /// A cgroup by fd, walked in `order` (`BPF_CGROUP_ITER_*`: 1 self only, 2 descendants
    /// pre-order, 3 post-order, 4 ancestors up).
    Cgroup {
        /// The cgroup's fd.
        fd: BorrowedFd<'a>,
        /// The walk order, a `BPF_CGROUP_ITER_*` value (1 to 4).
        order: u32,
    },
}

/// `union bpf_iter_link_info`, the member a scope uses.
enum LinkInfo {
    Map(IterMapInfo),
    Task(IterTaskInfo),
    Cgroup(IterCgroupInfo),
}

impl IterScope<'_> {
    /// The `bpf_iter_link_info` member, or `None` for [`IterScope::All`].
    fn link_info(&self) -> Option<LinkInfo> {
        let task = |tid, pid, pid_fd| LinkInfo::Task(IterTaskInfo { tid, pid, pid_fd });
        Some(match *self {
            IterScope::All => return None,
            IterScope::Map(fd) => LinkInfo::Map(IterMapInfo { map_fd: fd.as_raw_fd() as u32 }),
            IterScope::Thread(tid) => task(tid, 0, 0),
            IterScope::Process(pid) => task(0, pid, 0),
            IterScope::ProcessFd(fd) => task(0, 0, fd.as_raw_fd() as u32),
            IterScope::Cgroup { fd, order } => LinkInfo::Cgroup(IterCgroupInfo { order, cgroup_fd: fd.as_raw_fd() as u32, cgroup_id: 0 }),
        })
    }
}

/// The vmlinux BTF id of iterator `target`'s `FUNC` (`task` → `bpf_iter_task`).
pub fn target_btf_id(target: &str) -> Result<u32, ProbeError> {
    let func = format!("bpf_iter_{}", target.strip_prefix("bpf_iter_").unwrap_or(target));
    let what = format!("iter/{target}");
    let btf = Btf::vmlinux_shared().map_err(|source| ProbeError::Btf { what: format!("{what}: reading vmlinux BTF"), source })?;
    btf.find_by_name_kind(&func, Kind::Func)
        .map(|id| id.get())
        .ok_or_else(|| ProbeError::invalid(what, format!("no BTF FUNC `{func}` in this kernel: no such iterator")))
}

/// Load options for an iterator program named `name` over `target` (`task`, `task_file`,
/// `bpf_map_elem`, …): `tracing`, `trace_iter`, the target's BTF id.
pub fn load_options(name: &str, target: &str) -> Result<LoadOptions, ProbeError> {
    Ok(LoadOptions::new(name, ProgType::Tracing).expected_attach_type(AttachType::TraceIter).attach_btf_id(target_btf_id(target)?))
}

impl Program {
    /// Create an iterator link for this program (loaded with [`load_options`]).
    pub fn attach_iter(&self, scope: &IterScope<'_>) -> Result<Link, ProbeError> {
        let what = format!("iter ({scope:?}) ← {}", self.describe());
        let info = scope.link_info();
        let mut attr = LinkCreateAttr::new(self.as_fd().as_raw_fd() as u32, 0, AttachType::TraceIter.raw(), 0);
        match &info {
            None => {}
            Some(LinkInfo::Map(m)) => attr.set_target(IterInfoLink::new(m)),
            Some(LinkInfo::Task(t)) => attr.set_target(IterInfoLink::new(t)),
            Some(LinkInfo::Cgroup(c)) => attr.set_target(IterInfoLink::new(c)),
        }
        let fd = sys::bpf_fd(Cmd::LinkCreate, &mut attr).map_err(|source| sys_error(format!("link_create({what})"), source))?;
        Ok(Link::from_link_fd(fd, what))
    }
}

/// A new reader of an iterator link (`BPF_ITER_CREATE`): each `read` runs the program for the
/// next objects; end of file when all were visited. Each reader iterates afresh.
pub fn open(link: &Link) -> Result<File, ProbeError> {
    let fd = link.link_fd().ok_or_else(|| ProbeError::invalid(link.describe(), "not a bpf_link, so not an iterator"))?;
    let mut attr = IterCreateAttr { link_fd: fd.as_raw_fd() as u32, flags: 0 };
    let fd = sys::bpf_fd(Cmd::IterCreate, &mut attr).map_err(|source| sys_error(format!("iter_create({})", link.describe()), source))?;
    Ok(File::from(fd))
}

/// Run the iterator once to the end and return everything the program wrote.
pub fn read_to_end(link: &Link) -> Result<Vec<u8>, ProbeError> {
    let mut out = Vec::new();
    open(link)?
        .read_to_end(&mut out)
        .map_err(|source| ProbeError::Link(LinkError::Target { what: format!("read(iterator {})", link.describe()), message: sys::describe_io_error(&source) }))?;
    Ok(out)
}
