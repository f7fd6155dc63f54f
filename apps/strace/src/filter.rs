//! `-e trace=EXPR`: which system calls to trace, as strace reads it — names, classes
//! (`%file`, `%net`, `%process`, `%desc`, `%memory`, `%signal`, `%ipc`), `all`, `none`, and `!`
//! to negate the whole set. The result is the set of syscall numbers the kernel program lets
//! through (the `selected` map): the filtering happens in the kernel.

use std::collections::BTreeSet;
use std::str::FromStr;

use syscalls::Sysno;

/// Calls that take a file name (strace's `%file`).
const FILE: &[&str] = &[
    "open", "openat", "openat2", "creat", "access", "faccessat", "faccessat2", "stat", "lstat", "newfstatat", "statx", "statfs", "unlink", "unlinkat", "rmdir", "mkdir", "mkdirat", "rename",
    "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "readlink", "readlinkat", "chdir", "chroot", "chmod", "fchmodat", "chown", "lchown", "fchownat", "truncate", "utime",
    "utimes", "utimensat", "futimesat", "mknod", "mknodat", "execve", "execveat", "mount", "umount2", "swapon", "swapoff", "getxattr", "lgetxattr", "setxattr", "lsetxattr", "listxattr",
    "llistxattr", "removexattr", "lremovexattr", "acct", "pivot_root", "uselib", "inotify_add_watch", "fanotify_mark", "name_to_handle_at", "quotactl",
];
/// Network calls (`%net`).
const NET: &[&str] = &[
    "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
    "setsockopt", "getsockopt",
];
/// Process life (`%process`).
const PROCESS: &[&str] = &["clone", "clone3", "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal", "unshare"];
/// Memory mapping (`%memory`).
const MEMORY: &[&str] = &["mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "mlock", "munlock", "mlockall", "munlockall", "mincore", "msync", "remap_file_pages", "mbind", "set_mempolicy", "get_mempolicy", "pkey_mprotect", "process_madvise"];
/// Signals (`%signal`).
const SIGNAL: &[&str] = &["rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "kill", "tkill", "tgkill", "pause", "signalfd", "signalfd4"];
/// System V IPC (`%ipc`).
const IPC: &[&str] = &["msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semctl", "semtimedop", "shmget", "shmat", "shmdt", "shmctl"];
/// Calls on file descriptors (`%desc`), besides the %file calls that return one.
const DESC: &[&str] = &[
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "ioctl", "lseek", "fstat",
    "fstatfs", "fsync", "fdatasync", "ftruncate", "fchdir", "fchmod", "fchown", "flock", "getdents64", "pipe", "pipe2", "select", "pselect6", "poll", "ppoll", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "eventfd2", "timerfd_create", "timerfd_settime", "signalfd4", "inotify_init1", "sendfile", "splice", "tee", "copy_file_range", "mmap", "fadvise64",
    "fallocate", "openat", "open", "creat", "socket", "accept", "accept4", "connect", "bind", "listen", "memfd_create", "pidfd_open", "bpf",
];

fn class(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "file" => FILE,
        "net" | "network" => NET,
        "process" => PROCESS,
        "memory" => MEMORY,
        "signal" => SIGNAL,
        "ipc" => IPC,
        "desc" => DESC,
        _ => return None,
    })
}

/// Every syscall number of this architecture.
fn all() -> BTreeSet<u32> {
    Sysno::iter().map(|s| s.id() as u32).collect()
}

/// The set `-e trace=EXPR` selects.
pub fn parse(expr: &str) -> Result<BTreeSet<u32>, String> {
    let (negate, body) = match expr.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, expr),
    };
    let mut set = BTreeSet::new();
    for item in body.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "all" => set.extend(all()),
            "none" => {}
            c if c.starts_with('%') => {
                let names = class(&c[1..]).ok_or_else(|| format!("unknown class `{c}` (%file, %net, %process, %desc, %memory, %signal, %ipc)"))?;
                set.extend(names.iter().filter_map(|n| Sysno::from_str(n).ok()).map(|s| s.id() as u32));
            }
            name => {
                let s = Sysno::from_str(name).map_err(|_| format!("unknown system call `{name}`"))?;
                set.insert(s.id() as u32);
            }
        }
    }
    Ok(if negate { all().difference(&set).copied().collect() } else { set })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &BTreeSet<u32>) -> Vec<String> {
        set.iter().map(|&n| crate::decode::name(n)).collect()
    }

    #[test]
    fn names_classes_and_negation() {
        assert_eq!(names(&parse("openat,read").unwrap()), ["read", "openat"]);
        assert!(parse("%file").unwrap().contains(&(Sysno::openat.id() as u32)));
        assert!(!parse("%file").unwrap().contains(&(Sysno::read.id() as u32)));
        let not_read = parse("!read").unwrap();
        assert!(!not_read.contains(&(Sysno::read.id() as u32)) && not_read.contains(&(Sysno::write.id() as u32)));
        assert_eq!(parse("none").unwrap().len(), 0);
        assert!(parse("bogus").unwrap_err().contains("bogus"));
        assert!(parse("%bogus").unwrap_err().contains("unknown class"));
    }
}
