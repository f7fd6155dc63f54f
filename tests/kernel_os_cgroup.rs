//! `bpfkit::os::Cgroup` against the kernel: the cgroup2 mount found in mountinfo, a child that
//! joins before `execve` (a program attached to the cgroup governs its very first socket), the
//! id `bpf_get_current_cgroup_id()` reports, and removal — nested cgroups, processes killed or
//! moved to the parent, from drop or from a remover.

mod support;

use std::process::Stdio;

use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::os::{cgroup2_mount, Cgroup, CgroupRemover, Leftovers};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};

fn name(tag: &str) -> String {
    format!("bpfkit-os-{tag}-{}", std::process::id())
}

/// The cgroup `pid` belongs to in the v2 hierarchy, from `/proc/PID/cgroup` (`0::/path`).
fn v2_cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_string()
}

#[test]
fn the_mount_is_cgroup2_and_has_the_root_files() {
    if !support::kernel_or_skip("cgroup2 mount") {
        return;
    }
    let mount = cgroup2_mount().unwrap();
    assert!(mount.join("cgroup.procs").exists() && mount.join("cgroup.subtree_control").exists(), "{}", mount.display());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(mount.to_str().unwrap()) && l.split_whitespace().nth(2) == Some("cgroup2")));
}

#[test]
fn a_child_joins_before_exec_and_the_program_sees_its_cgroup_id() {
    if !support::kernel_or_skip("cgroup command") {
        return;
    }
    let cg = Cgroup::create(&name("join")).unwrap();
    assert!(cg.path().starts_with(cgroup2_mount().unwrap()));
    // cgroup/sock_create: record the creating task's cgroup id, refuse the socket.
    let seen = Map::create(&MapSpec::new("seen", MapType::Array, 4, 8, 1)).unwrap();
    let asm = bpf_asm! {
        call bpf_get_current_cgroup_id
        r1 = map_value[seen]+0 ll
        *(u64 *)(r1 + 0) = r0
        r0 = 0
        exit
    };
    let opts = LoadOptions::new("no_sockets", ProgType::CgroupSock).expected_attach_type(AttachType::CgroupInetSockCreate);
    let prog = Program::load(&asm.assemble().unwrap(), &[&seen], &opts).unwrap();
    let link = prog.attach_cgroup(&cg, AttachType::CgroupInetSockCreate).unwrap();
    // The first thing python does after start-up is the socket: refused, so the child was in
    // the cgroup before it ran. It prints its cgroup as /proc says.
    let script = "import socket\ntry:\n    socket.socket()\n    print('created')\nexcept OSError as e:\n    print('errno', e.errno)\nprint(open('/proc/self/cgroup').read().splitlines()[-1])";
    let out = cg.command("python3").unwrap().args(["-c", script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let relative = cg.path().strip_prefix(cgroup2_mount().unwrap()).unwrap();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), [format!("errno {}", libc::EPERM), format!("0::/{}", relative.display())], "{stdout}");
    assert_eq!(seen.typed::<u32, u64>().unwrap().get(&0).unwrap(), Some(cg.id()), "bpf_get_current_cgroup_id() is Cgroup::id()");
    drop(link);
    let path = cg.path().to_path_buf();
    cg.remove().unwrap();
    assert!(!path.exists());
}

#[test]
fn drop_kills_what_is_inside_and_removes_nested_cgroups() {
    if !support::kernel_or_skip("cgroup drop") {
        return;
    }
    let parent = Cgroup::create(&name("parent")).unwrap();
    let child = parent.create_child("leaf").unwrap();
    let mut sleeper = child.command("sleep").unwrap().arg("600").stdin(Stdio::null()).spawn().unwrap();
    let mut outer = parent.command("sleep").unwrap().arg("600").stdin(Stdio::null()).spawn().unwrap();
    assert_eq!(child.processes().unwrap(), [sleeper.id()]);
    assert_eq!(parent.processes().unwrap(), [outer.id()]);
    let (parent_path, child_path) = (parent.path().to_path_buf(), child.path().to_path_buf());
    drop(parent); // the child first, then the parent
    assert!(!child_path.exists() && !parent_path.exists());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(outer.wait().unwrap().signal(), Some(libc::SIGKILL));
    drop(child); // already gone: nothing to do
}

#[test]
fn a_remover_can_move_processes_to_the_parent_instead() {
    if !support::kernel_or_skip("cgroup remover") {
        return;
    }
    let mount = cgroup2_mount().unwrap();
    let holder = Cgroup::create(&name("holder")).unwrap();
    let cg = holder.create_child("moved").unwrap().with_leftovers(Leftovers::MoveToParent);
    let mut sleeper = cg.command("sleep").unwrap().arg("600").stdin(Stdio::null()).spawn().unwrap();
    let remover = cg.remover();
    remover.remove().unwrap();
    assert!(!cg.path().exists());
    assert_eq!(v2_cgroup_of(sleeper.id()), format!("/{}", holder.path().strip_prefix(&mount).unwrap().display()), "moved to the parent, alive");
    assert!(sleeper.try_wait().unwrap().is_none());
    remover.remove().unwrap(); // twice is fine
    drop(cg);
    drop(holder); // kills the sleeper it now holds
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn a_remover_made_before_the_cgroup_removes_it() {
    if !support::kernel_or_skip("cgroup remover by path") {
        return;
    }
    let name = name("early");
    let remover = CgroupRemover::for_path(cgroup2_mount().unwrap().join(&name), Leftovers::Kill);
    remover.remove().unwrap(); // nothing there yet: nothing to do
    let cg = Cgroup::create(&name).unwrap();
    let mut sleeper = cg.command("sleep").unwrap().arg("600").stdin(Stdio::null()).spawn().unwrap();
    remover.remove().unwrap();
    assert!(!cg.path().exists());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
}
