fn main() {
    let _ = bpfkit::bpf_asm! {
    top:
        mov r0, 0
    top:
        exit
    };
}
