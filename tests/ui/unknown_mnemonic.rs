fn main() {
    let _ = bpfkit::bpf_asm! {
        mov r0, 0
        ldxq r0, [r1+0]
        exit
    };
}
