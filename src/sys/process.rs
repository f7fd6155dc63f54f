//! The process and the filesystems around it: thread ids, pidfds (the keys of task storage),
//! and where tracefs is.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// pidfd_open(2): an fd for process `pid` (the key of task storage maps).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Where tracefs is mounted: `/sys/kernel/tracing`, else the old `/sys/kernel/debug/tracing`;
/// when neither is mounted, tracefs is mounted at `/sys/kernel/tracing` (needs CAP_SYS_ADMIN).
pub fn tracefs_dir() -> io::Result<std::path::PathBuf> {
    const TRACEFS_MAGIC: i64 = 0x7472_6163;
    let primary = std::path::Path::new("/sys/kernel/tracing");
    for dir in [primary, std::path::Path::new("/sys/kernel/debug/tracing")] {
        if super::fs_magic(dir).ok() == Some(TRACEFS_MAGIC) {
            return Ok(dir.to_path_buf());
        }
    }
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: NUL-terminated static strings; no data argument.
    let ret = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if ret != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {e}")));
    }
    Ok(primary.to_path_buf())
}

/// The calling thread's id (what `bpf_get_current_pid_tgid()` returns in its low 32 bits).
pub fn gettid() -> i32 {
    // SAFETY: gettid(2) has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Make the child `command` starts join a cgroup before it executes its program: the child
/// writes `0` (itself) into `procs`, an open `cgroup.procs` file, between fork and `execve`, so
/// the program's first instruction already runs in the cgroup. A failed write fails the spawn
/// with that write's error.
pub fn join_cgroup_before_exec(command: &mut std::process::Command, procs: OwnedFd) {
    use std::os::unix::process::CommandExt;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
    // SAFETY: the closure runs in the forked child before exec and makes one async-signal-safe
    // call, write(2), on a descriptor the closure keeps open (it owns `procs`); it allocates
    // nothing (io::Error::last_os_error only reads errno).
    unsafe {
        command.pre_exec(move || {
            let _keep_open = &procs;
            if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

/// Send `signal` to process `pid` (kill(2)).
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An exclusive advisory lock (flock) on `path`, created if missing; waits for other holders.
/// Released when the returned file is closed.
pub fn lock_file_exclusive(path: &std::path::Path) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    loop {
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A child process created but held before `execve`, until [`PausedChild::resume`]: what a
/// tracer needs to have its probes in place before the program's first instruction. (std's
/// `Command::spawn` waits for the exec to report its errors, so it cannot hold a child there:
/// this forks and execs itself.)
#[derive(Debug)]
pub struct PausedChild {
    pid: i32,
    /// The write end of the pipe the child waits on (closing it lets the child go on).
    release: Option<OwnedFd>,
    /// The read end of the pipe a failed exec writes its errno into (success closes it).
    exec_status: Option<OwnedFd>,
    reaped: bool,
}

impl PausedChild {
    /// Fork a child that waits, then executes `program` (a path, or a name looked up in
    /// `$PATH`) with `args` (`args[0]` is the program's own name) in this environment.
    pub fn spawn(program: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> io::Result<PausedChild> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte"));
        let path = resolve_program(program)?;
        let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid("the program path"))?;
        let args: Vec<CString> = args.iter().map(|a| CString::new(a.as_bytes()).map_err(|_| invalid("an argument"))).collect::<io::Result<_>>()?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let (wait_read, wait_write) = pipe_cloexec()?;
        let (status_read, status_write) = pipe_cloexec()?;
        let raw = |fd: &OwnedFd| std::os::fd::AsRawFd::as_raw_fd(fd);
        let (wr, ww, sr, sw) = (raw(&wait_read), raw(&wait_write), raw(&status_read), raw(&status_write));
        // SAFETY: fork(2) has no arguments; both returns are handled below.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // The child. Only async-signal-safe calls from here on (the parent may have other
            // threads): close, read, execv, write, _exit; everything was allocated before fork.
            // SAFETY: the descriptors are this process's copies; `argv` is NUL-terminated and
            // its strings outlive the exec; _exit ends the process without unwinding.
            unsafe {
                libc::close(ww);
                libc::close(sr);
                let mut byte = 0u8;
                while libc::read(wr, (&mut byte as *mut u8).cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
                libc::execv(path.as_ptr(), argv.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(sw, (&errno as *const i32).cast(), 4);
                libc::_exit(127);
            }
        }
        drop((wait_read, status_write));
        Ok(PausedChild { pid, release: Some(wait_write), exec_status: Some(status_read), reaped: false })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Let the child execute its program: `Err` with the exec's errno when that failed (the
    /// child has then exited with status 127).
    pub fn resume(&mut self) -> io::Result<()> {
        self.release.take(); // closing the write end: the child's read returns 0
        let Some(status) = self.exec_status.take() else { return Ok(()) };
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            // SAFETY: reading into the 4-byte buffer from a descriptor this struct owns.
            let n = unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(&status), errno[got..].as_mut_ptr().cast(), 4 - got) };
            match n {
                0 => return Ok(()), // closed by a successful exec
                n if n > 0 => got += n as usize,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => return Err(io::Error::last_os_error()),
            }
        }
        Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
    }

    /// Send the child SIGKILL (whether or not it was resumed); a no-op once it was reaped.
    /// [`PausedChild::wait`] then reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        // SAFETY: signalling our own child, not yet reaped, so the pid is still ours.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait for the child to end (waitpid).
    pub fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer; the pid is our own child's.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.reaped = true;
                return Ok(std::process::ExitStatus::from_raw(status));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for PausedChild {
    fn drop(&mut self) {
        // Never resumed: the program must not run; end the child and reap it.
        if self.release.take().is_some() && !self.reaped {
            // SAFETY: signalling and reaping our own child by pid.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `program` as a path: itself when it has a `/`, else the first executable of that name in
/// `$PATH` (as execvp would pick, but before forking).
fn resolve_program(program: &std::ffi::OsStr) -> io::Result<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') {
        return Ok(program.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: not found in $PATH", program.to_string_lossy())))
}

#[cfg(test)]
mod tests {
    use super::PausedChild;

    #[test]
    fn a_paused_child_runs_its_program_only_when_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let script = format!("echo ran > {}", marker.display());
        let args = ["sh".into(), "-c".into(), script.into()];
        let mut paused = PausedChild::spawn("sh".as_ref(), &args).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!marker.exists(), "the program has not started");
        // Still the forked copy of this test binary, waiting before exec.
        let exe = std::fs::read_link(format!("/proc/{}/exe", paused.id())).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        paused.resume().unwrap();
        assert!(paused.wait().unwrap().success());
        assert!(marker.exists(), "resumed, it ran");

        // A program that cannot be executed: resume says why.
        let mut bad = PausedChild::spawn("/nonexistent/bpfkit".as_ref(), &["x".into()]).unwrap();
        assert_eq!(bad.resume().unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert_eq!(bad.wait().unwrap().code(), Some(127));
        assert!(PausedChild::spawn("bpfkit-no-such-program".as_ref(), &["x".into()]).is_err());

        // Dropped without resuming: killed and reaped, the program never ran.
        let never = dir.path().join("never");
        let args = ["sh".into(), "-c".into(), format!("echo ran > {}", never.display()).into()];
        let paused = PausedChild::spawn("sh".as_ref(), &args).unwrap();
        let pid = paused.id();
        drop(paused);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "reaped");
        assert!(!never.exists());
    }

    #[test]
    fn a_resumed_child_is_killed_and_reaped() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = PausedChild::spawn("sleep".as_ref(), &["sleep".into(), "30".into()]).unwrap();
        child.resume().unwrap();
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        child.kill().unwrap(); // reaped: nothing to signal, and no other process is hit
    }
}
