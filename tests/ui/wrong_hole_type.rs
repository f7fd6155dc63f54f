fn main() {
    let offset: i64 = 8;
    let _ = bpfkit::bpf_asm! { r0 = *(u64 *)(r10 - {offset}); exit };
}
