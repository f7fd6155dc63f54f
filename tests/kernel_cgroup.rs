//! Kernel tests of the cgroup hooks a process meets when it binds, sends, sets or reads socket
//! options and opens devices: each program is attached to a child cgroup v2 the test creates,
//! a child process moved into that cgroup does the real system call, and the test asserts what
//! the call returned (the hook's effect) and how often the hook ran. Dropping the link detaches.
//!
//! The child is this test binary run again with `--exact child_entry_point` and the action in
//! its environment: it moves itself into the cgroup (`cgroup.procs` ← 0) and makes the calls, so
//! no other program (shell, python) is needed.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use bpfkit::attach::{AttachPath, Link};
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use support::cgroup::ChildCgroup;

const CHILD_DIR: &str = "BPFKIT_CGROUP_CHILD_DIR";
const CHILD_ACTIONS: &str = "BPFKIT_CGROUP_CHILD_ACTIONS";

fn counter(name: &str) -> Map {
    Map::create(&MapSpec::new(name, MapType::Array, 4, 8, 1)).unwrap()
}

fn count(m: &Map) -> u64 {
    m.typed::<u32, u64>().unwrap().get(&0).unwrap().unwrap()
}

/// The byte offset of `member` in the kernel's context struct `ty`, from vmlinux BTF.
fn ctx_offset(ty: &str, member: &str) -> i16 {
    let vmlinux = Btf::vmlinux().unwrap();
    let id = vmlinux.find_by_name_kind(ty, Kind::Struct).unwrap();
    (vmlinux.member_offset(id, member).unwrap() / 8) as i16
}

/// Add 1 to `hits[0]`, then return `verdict`: the end of a program.
fn count_and_return(verdict: i32) -> bpfkit::insn::Program {
    support::progs::count_and_return("hits", verdict)
}

/// Run the child with `actions` (`;`-separated, see [`child_entry_point`]) inside `cgroup`; the
/// result line of each action, in order.
fn run_in(cgroup: &ChildCgroup, actions: &str) -> Vec<String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry_point", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &cgroup.0)
        .env(CHILD_ACTIONS, actions)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // libtest prints `test child_entry_point ... ` before the first result, on the same line.
    stdout.lines().filter_map(|l| l.split_once("CHILD-RESULT ")).map(|(_, r)| r.to_owned()).collect()
}

fn os_result(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY (test code): a live socket fd and a 4-byte option value.
    let r = unsafe { libc::setsockopt(fd, level, name, &value as *const i32 as *const libc::c_void, 4) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: i32, level: i32, name: i32) -> std::io::Result<i32> {
    let (mut value, mut len) = (0i32, 4 as libc::socklen_t);
    // SAFETY (test code): a live socket fd; `value`/`len` describe a 4-byte buffer.
    let r = unsafe { libc::getsockopt(fd, level, name, &mut value as *mut i32 as *mut libc::c_void, &mut len) };
    if r == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Not a test of its own: the entry point of the child process [`run_in`] starts. Run by the
/// harness as a test with no child environment, it has nothing to do.
///
/// Actions: `bind PORT`, `sendto PORT TEXT`, `setprio VALUE`, `getprio`, `open PATH`.
#[test]
fn child_entry_point() {
    let (Ok(dir), Ok(actions)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ACTIONS)) else {
        return;
    };
    // Writing 0 moves the writing process (all its threads) into the cgroup.
    std::fs::write(format!("{dir}/cgroup.procs"), "0").unwrap();
    use std::os::fd::AsRawFd;
    for action in actions.split(';') {
        let words: Vec<&str> = action.split_whitespace().collect();
        let result = match words.as_slice() {
            ["bind", port] => os_result(std::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).map(drop)),
            ["sendto", port, text] => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                os_result(s.send_to(text.as_bytes(), ("127.0.0.1", port.parse::<u16>().unwrap())).map(drop))
            }
            ["setprio", v] => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                os_result(setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PRIORITY, v.parse().unwrap()))
            }
            ["getprio"] => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                match getsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PRIORITY) {
                    Ok(v) => format!("value {v}"),
                    Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
                }
            }
            ["open", path] => os_result(std::fs::File::open(path).map(drop)),
            other => panic!("unknown child action {other:?}"),
        };
        println!("CHILD-RESULT {result}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn link_id(link: &Link) -> Option<u32> {
    (link.path() == AttachPath::BpfLink).then(|| link.info().unwrap().id)
}

/// After drop: neither the kernel nor bpftool lists the link or any program on the cgroup.
fn assert_detached(cg: &ChildCgroup, id: Option<u32>) {
    if let Some(id) = id {
        assert!(!Link::all_ids().unwrap().contains(&id), "link {id} still exists after drop");
        support::bpftool::assert_link_listed(id, false);
    }
    support::bpftool::assert_cgroup_progs(&cg.0, 0);
}

#[test]
fn bind4_refuses_one_port_and_counts_every_bind() {
    if !support::kernel_or_skip("cgroup inet4 bind") {
        return;
    }
    let (blocked, open) = (free_port(), free_port());
    let user_port = ctx_offset("bpf_sock_addr", "user_port");
    let port_be = blocked.to_be() as i32;
    let hits = counter("hits");
    let deny = count_and_return(0);
    let asm = bpf_asm! {
        r2 = *(u32 *)(r1 + {user_port})
        if r2 != {port_be} goto allow
        {&deny}
    allow:
        r0 = 1
        exit
    };
    let opts = LoadOptions::new("deny_bind", ProgType::CgroupSockAddr).expected_attach_type(AttachType::CgroupInet4Bind);
    let prog = Program::load(&asm.assemble().unwrap(), &[&hits], &opts).unwrap();
    for path in [AttachPath::BpfLink, AttachPath::ProgAttach] {
        let cg = ChildCgroup::new("bind4");
        let link = prog.attach_cgroup_via(cg.open(), AttachType::CgroupInet4Bind, path).unwrap();
        assert_eq!(link.path(), path);
        support::bpftool::assert_cgroup_progs(&cg.0, 1);
        let before = count(&hits);
        let got = run_in(&cg, &format!("bind {blocked};bind {open};bind {blocked}"));
        assert_eq!(got, [format!("errno {}", libc::EPERM), "ok".into(), format!("errno {}", libc::EPERM)], "{path:?}");
        assert_eq!(count(&hits) - before, 2, "{path:?}: two binds refused");
        let id = link_id(&link);
        drop(link);
        assert_eq!(run_in(&cg, &format!("bind {blocked}")), ["ok"], "{path:?}: detached on drop");
        assert_eq!(count(&hits) - before, 2, "{path:?}: no hook after drop");
        assert_detached(&cg, id);
    }
}

#[test]
fn udp4_sendmsg_rewrites_the_destination_port() {
    if !support::kernel_or_skip("cgroup udp4 sendmsg") {
        return;
    }
    let intended = UdpSocket::bind("127.0.0.1:0").unwrap();
    let redirected = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&intended, &redirected] {
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    }
    let (from, to) = (intended.local_addr().unwrap().port(), redirected.local_addr().unwrap().port());
    let user_port = ctx_offset("bpf_sock_addr", "user_port");
    let (from_be, to_be) = (from.to_be() as i32, to.to_be() as i32);
    let hits = counter("hits");
    let rewritten = count_and_return(1);
    let asm = bpf_asm! {
        r2 = *(u32 *)(r1 + {user_port})
        if r2 != {from_be} goto pass
        r2 = {to_be}
        *(u32 *)(r1 + {user_port}) = r2
        {&rewritten}
    pass:
        r0 = 1
        exit
    };
    let opts = LoadOptions::new("redirect_udp", ProgType::CgroupSockAddr).expected_attach_type(AttachType::CgroupUdp4Sendmsg);
    let prog = Program::load(&asm.assemble().unwrap(), &[&hits], &opts).unwrap();
    let cg = ChildCgroup::new("sendmsg4");
    let link = prog.attach_cgroup(cg.open(), AttachType::CgroupUdp4Sendmsg).unwrap();
    let sends: Vec<String> = (0..5).map(|i| format!("sendto {from} datagram-{i}")).collect();
    assert_eq!(run_in(&cg, &sends.join(";")), ["ok"; 5]);
    assert_eq!(count(&hits), 5, "five datagrams rewritten");
    let mut buf = [0u8; 64];
    for i in 0..5 {
        let (n, src): (usize, SocketAddr) = redirected.recv_from(&mut buf).expect("the redirected port receives every datagram");
        assert_eq!(&buf[..n], format!("datagram-{i}").as_bytes());
        assert!(src.ip().is_loopback());
    }
    assert!(intended.recv_from(&mut buf).is_err(), "nothing reaches the port the child addressed");
    let id = link_id(&link);
    drop(link);
    assert_eq!(run_in(&cg, &format!("sendto {from} after-drop")), ["ok"]);
    let (n, _) = intended.recv_from(&mut buf).expect("after drop the datagram goes where it was sent");
    assert_eq!(&buf[..n], b"after-drop");
    assert_eq!(count(&hits), 5);
    assert_detached(&cg, id);
}

#[test]
fn sockopt_hooks_refuse_a_set_and_rewrite_a_get() {
    if !support::kernel_or_skip("cgroup sockopt") {
        return;
    }
    let off = |m: &str| ctx_offset("bpf_sockopt", m);
    let (level, optname, optval, optval_end, retval) = (off("level"), off("optname"), off("optval"), off("optval_end"), off("retval"));
    let (sol_socket, so_priority) = (libc::SOL_SOCKET, libc::SO_PRIORITY);
    // setsockopt(SOL_SOCKET, SO_PRIORITY) is refused (return 0: EPERM); others proceed.
    let sets = counter("hits");
    let refuse = count_and_return(0);
    let set_asm = bpf_asm! {
        r2 = *(u32 *)(r1 + {level})
        if r2 != {sol_socket} goto proceed
        r2 = *(u32 *)(r1 + {optname})
        if r2 != {so_priority} goto proceed
        {&refuse}
    proceed:
        r0 = 1
        exit
    };
    let opts = LoadOptions::new("no_prio_set", ProgType::CgroupSockopt).expected_attach_type(AttachType::CgroupSetsockopt);
    let set_prog = Program::load(&set_asm.assemble().unwrap(), &[&sets], &opts).unwrap();
    // getsockopt(SOL_SOCKET, SO_PRIORITY) reports 42 whatever the socket's priority is.
    let gets = counter("hits");
    let rewritten = count_and_return(1);
    let get_asm = bpf_asm! {
        r2 = *(u32 *)(r1 + {level})
        if r2 != {sol_socket} goto proceed
        r2 = *(u32 *)(r1 + {optname})
        if r2 != {so_priority} goto proceed
        r2 = *(u64 *)(r1 + {optval})
        r3 = *(u64 *)(r1 + {optval_end})
        r4 = r2
        r4 += 4
        if r4 > r3 goto proceed
        *(u32 *)(r2 + 0) = 42
        *(u32 *)(r1 + {retval}) = 0
        {&rewritten}
    proceed:
        r0 = 1
        exit
    };
    let opts = LoadOptions::new("prio_is_42", ProgType::CgroupSockopt).expected_attach_type(AttachType::CgroupGetsockopt);
    let get_prog = Program::load(&get_asm.assemble().unwrap(), &[&gets], &opts).unwrap();

    let cg = ChildCgroup::new("sockopt");
    assert_eq!(run_in(&cg, "setprio 3;getprio"), ["ok", "value 0"], "before attach");
    let set_link = set_prog.attach_cgroup(cg.open(), AttachType::CgroupSetsockopt).unwrap();
    let get_link = get_prog.attach_cgroup(cg.open(), AttachType::CgroupGetsockopt).unwrap();
    support::bpftool::assert_cgroup_progs(&cg.0, 2);
    let got = run_in(&cg, "setprio 3;setprio 5;getprio;getprio");
    assert_eq!(got, [format!("errno {}", libc::EPERM), format!("errno {}", libc::EPERM), "value 42".into(), "value 42".into()]);
    assert_eq!((count(&sets), count(&gets)), (2, 2));
    let ids = (link_id(&set_link), link_id(&get_link));
    drop(set_link);
    drop(get_link);
    assert_eq!(run_in(&cg, "setprio 3;getprio"), ["ok", "value 0"], "after drop");
    assert_detached(&cg, ids.0);
    assert_detached(&cg, ids.1);
}

#[test]
fn device_hook_denies_one_device_node() {
    if !support::kernel_or_skip("cgroup device") {
        return;
    }
    // /dev/null is char device 1:3; /dev/zero is 1:5.
    let off = |m: &str| ctx_offset("bpf_cgroup_dev_ctx", m);
    let (major, minor) = (off("major"), off("minor"));
    let hits = counter("hits");
    let deny = count_and_return(0);
    let asm = bpf_asm! {
        r2 = *(u32 *)(r1 + {major})
        r3 = *(u32 *)(r1 + {minor})
        if r2 != 1 goto allow
        if r3 != 3 goto allow
        {&deny}
    allow:
        r0 = 1
        exit
    };
    let opts = LoadOptions::new("no_dev_null", ProgType::CgroupDevice).expected_attach_type(AttachType::CgroupDevice);
    let prog = Program::load(&asm.assemble().unwrap(), &[&hits], &opts).unwrap();
    let cg = ChildCgroup::new("device");
    let link = prog.attach_cgroup(cg.open(), AttachType::CgroupDevice).unwrap();
    let got = run_in(&cg, "open /dev/null;open /dev/zero;open /dev/null");
    assert_eq!(got, [format!("errno {}", libc::EPERM), "ok".into(), format!("errno {}", libc::EPERM)]);
    assert_eq!(count(&hits), 2, "two denials");
    let id = link_id(&link);
    drop(link);
    assert_eq!(run_in(&cg, "open /dev/null"), ["ok"], "after drop");
    assert_detached(&cg, id);
}

/// `BPF_PROG_ATTACH`'s three modes, seen from a process in a child cgroup creating one socket:
/// each `cgroup/sock_create` program writes its tag to a ring buffer, so the buffer holds the
/// programs that ran, in the order they ran.
#[test]
fn attach_modes_decide_what_runs_in_a_descendant() {
    use bpfkit::attach::{CgroupAttachMode, CgroupOptions};
    use bpfkit::events::RingBuf;
    use bpfkit::os::Cgroup;
    if !support::kernel_or_skip("cgroup attach modes") {
        return;
    }
    let ran = Map::create(&MapSpec::new("ran", MapType::RingBuf, 0, 0, 4096)).unwrap();
    let tagged = |tag: i32| {
        let asm = bpf_asm! {
            *(u32 *)(r10 - 4) = {tag}
            r1 = map[ran] ll
            r2 = r10
            r2 += -4
            r3 = 4
            r4 = 0
            call bpf_ringbuf_output
            r0 = 1
            exit
        };
        let opts = LoadOptions::new(format!("tag{tag}"), ProgType::CgroupSock).expected_attach_type(AttachType::CgroupInetSockCreate);
        Program::load(&asm.assemble().unwrap(), &[&ran], &opts).unwrap()
    };
    let (a, b, c) = (tagged(1), tagged(2), tagged(3));
    let hook = AttachType::CgroupInetSockCreate;
    let with = |mode| CgroupOptions { path: AttachPath::ProgAttach, mode };
    let one_socket = |cg: &Cgroup| -> Vec<u32> {
        let out = cg.command("python3").unwrap().args(["-c", "import socket; socket.socket()"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        RingBuf::new(&ran).unwrap().read_all().iter().map(|r| u32::from_ne_bytes(r[..4].try_into().unwrap())).collect()
    };
    let parent = Cgroup::create(&format!("bpfkit-modes-{}", std::process::id())).unwrap();
    let child = parent.create_child("child").unwrap();

    // Exclusive: the descendant may not attach, and runs the parent's program.
    let link_a = a.attach_cgroup_with(&parent, hook, &with(CgroupAttachMode::Exclusive)).unwrap();
    for mode in [CgroupAttachMode::Exclusive, CgroupAttachMode::AllowOverride, CgroupAttachMode::Multi] {
        let err = b.attach_cgroup_with(&child, hook, &with(mode)).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EPERM), "{mode:?} below an exclusive program: {err}");
    }
    assert_eq!(one_socket(&child), [1]);
    drop(link_a);

    // Override: the descendant's program replaces the parent's, for the descendant only.
    let link_a = a.attach_cgroup_with(&parent, hook, &with(CgroupAttachMode::AllowOverride)).unwrap();
    let link_b = b.attach_cgroup_with(&child, hook, &with(CgroupAttachMode::AllowOverride)).unwrap();
    assert_eq!(one_socket(&child), [2]);
    assert_eq!(one_socket(&parent), [1]);
    drop((link_b, link_a));

    // Multi: everything runs, the descendant's programs (in attach order) before the parent's;
    // a bpf_link is multi too.
    let _link_a = a.attach_cgroup_with(&parent, hook, &with(CgroupAttachMode::Multi)).unwrap();
    let _link_b = b.attach_cgroup_with(&child, hook, &with(CgroupAttachMode::Multi)).unwrap();
    let _link_c = c.attach_cgroup(&child, hook).unwrap();
    assert_eq!(one_socket(&child), [2, 3, 1]);
    assert_eq!(one_socket(&parent), [1]);
}
