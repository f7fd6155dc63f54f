fn main() {
    let _ = bpfkit::bpf_asm! { r11 = 1; exit };
}
