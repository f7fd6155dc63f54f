fn main() {
    let _ = bpfkit::bpf_asm! { if r1 == goto +1; exit };
}
