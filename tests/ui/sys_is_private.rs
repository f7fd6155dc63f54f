// Code outside bpfkit cannot reach the raw syscall funnel or its attribute structs (which carry
// pointers the kernel writes through): `sys` is private to the crate.
use bpfkit::sys::{bpf, Cmd, MapElemAttr};

fn main() {
    let mut attr = MapElemAttr::default();
    let _ = bpf(Cmd::MapLookupElem, &mut attr);
}
