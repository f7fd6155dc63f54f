//! The command a profile runs (`-- COMMAND`), watched to its end. A profile's stacks are named
//! after the run, from the mappings each process had; a command that ends before they are read
//! would leave its frames `[unknown]`. So the command is ptrace-seized with only
//! `PTRACE_O_TRACEEXIT`: it stops once, as it exits but before its memory is released, its
//! mappings are read, and it goes on. No system call or signal is intercepted beyond that (a
//! signal it receives is passed on as is), so it costs one stop per run.
//!
//! Only the command's own process gets this; its children that exit before the end of the run
//! are named from what was read of them while they ran.

use std::sync::mpsc::{Receiver, Sender};

use bpfkit::attach::symbols::{proc_maps, Mapping};
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// What the watcher reports.
#[derive(Debug)]
pub enum Event {
    /// Watching: the command may be let go. `held` says whether it will stop at its exit (else
    /// ptrace was refused and it is only waited for).
    Ready { held: bool },
    /// The command is exiting; these were its mappings.
    Exiting(u32, Vec<Mapping>),
    /// It ended: its exit code, or 128 + the signal that killed it.
    Ended(i32),
    /// Waiting for it failed.
    Failed(String),
}

/// Watch process `pid` (a child of this process, not yet running its program) from a thread of
/// its own: ptrace requests must come from the thread that seized the tracee.
pub fn watch(pid: u32) -> Receiver<Event> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || run(Pid::from_raw(pid as i32), tx));
    rx
}

fn run(pid: Pid, tx: Sender<Event>) {
    let held = ptrace::seize(pid, ptrace::Options::PTRACE_O_TRACEEXIT).is_ok();
    let _ = tx.send(Event::Ready { held });
    loop {
        let status = match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(s) => s,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                let _ = tx.send(Event::Failed(format!("waitpid({pid}): {e}")));
                return;
            }
        };
        match status {
            WaitStatus::PtraceEvent(_, _, event)
                if event == ptrace::Event::PTRACE_EVENT_EXIT as i32 =>
            {
                let maps = proc_maps(Some(pid.as_raw())).unwrap_or_default();
                let _ = tx.send(Event::Exiting(pid.as_raw() as u32, maps));
                let _ = ptrace::cont(pid, None);
            }
            WaitStatus::PtraceEvent(..) => {
                let _ = ptrace::cont(pid, None);
            }
            // A signal on its way to the command: pass it on.
            WaitStatus::Stopped(_, signal) => {
                let _ = ptrace::cont(pid, Some(signal));
            }
            WaitStatus::Exited(_, code) => {
                let _ = tx.send(Event::Ended(code));
                return;
            }
            WaitStatus::Signaled(_, signal, _) => {
                let _ = tx.send(Event::Ended(128 + signal as i32));
                return;
            }
            _ => {}
        }
    }
}
