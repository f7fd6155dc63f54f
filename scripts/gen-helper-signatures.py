#!/usr/bin/env python3
"""Regenerates src/helpers/prototypes.rs: every helper's C prototype from the uapi header's
documentation (libbpf-sys's vendored include/uapi/linux/bpf.h, the same text bpf_helper_defs.h
is generated from), split into return type and typed, named arguments, each classified into an
argument kind. Run after `cargo fetch`; commit the result."""
import glob, re, sys

paths = sorted(glob.glob(f"{__import__('os').path.expanduser('~')}/.cargo/registry/src/*/libbpf-sys-*/libbpf/include/uapi/linux/bpf.h"))
if not paths:
    sys.exit("libbpf-sys source not found: run `cargo fetch` first")
text = open(paths[-1]).read()
proto = re.compile(r"^ \* ((?:const )?[a-z_0-9 ]+?\**)\s*(bpf_[a-z0-9_]+)\((.*)\)$", re.M)

def kind(ty, name):
    t = ty.replace("const ", "").strip()
    if "struct bpf_map" in t: return "Map"
    if name in ("ctx",) or t in ("struct __sk_buff *", "struct xdp_md *", "struct pt_regs *", "struct sk_msg_md *", "struct sk_reuseport_md *", "struct bpf_sock_ops *", "struct bpf_sock_addr *", "struct bpf_perf_event_data *", "struct bpf_sk_lookup *", "struct bpf_sysctl *", "struct bpf_sockopt *"): return "Ctx"
    if name == "callback" or name.endswith("_fn"): return "Callback"
    if "*" in t:
        if t.startswith("char") and "*" in t: return "String" if "fmt" in name or "name" in name or "str" in name or "buf" == name else "Mem"
        if t.startswith("void"): return "Mem"
        if t.startswith("struct"): return "StructPtr"
        return "Mem"
    if re.search(r"(size|len)$", name) or name in ("size", "len", "buf_len", "data_len", "str_size", "sz"): return "Size"
    return "Scalar"

def ret_kind(ty):
    t = ty.replace("const ", "").strip()
    if "*" in t: return "PtrOrNull"
    if t == "void": return "Void"
    return "Scalar"

seen = {}
for m in proto.finditer(text):
    ret, name, args = m.group(1).strip(), m.group(2), m.group(3).strip()
    if name in seen: continue
    params = []
    if args and args != "void":
        for a in args.split(","):
            a = a.strip()
            mm = re.match(r"^(.*?)(\w+)(\[\])?$", a)
            ty, pn = (mm.group(1).strip(), mm.group(2)) if mm else (a, "")
            if mm and mm.group(3): ty += " *"
            params.append((ty, pn, kind(ty, pn)))
    seen[name] = (ret, ret_kind(ret), params)

out = ["//! Helper signatures: each helper's C prototype from the uapi header's documentation, generated",
       "//! by `scripts/gen-helper-signatures.py` from libbpf-sys's vendored `bpf.h`. Do not edit by hand.",
       "",
       "use super::helper::{ArgKind, HelperSig, Param, RetKind};",
       "",
       "/// Every documented helper's signature, by name.",
       "pub const SIGNATURES: &[HelperSig] = &["]
for name, (ret, rk, params) in seen.items():
    ps = ", ".join(f'Param {{ ty: "{t}", name: "{n}", kind: ArgKind::{k} }}' for t, n, k in params)
    out.append(f'    HelperSig {{ name: "{name}", ret: "{ret}", ret_kind: RetKind::{rk}, params: &[{ps}] }},')
out.append("];")
open("src/helpers/prototypes.rs", "w").write("\n".join(out) + "\n")
print(f"wrote src/helpers/prototypes.rs: {len(seen)} signatures")
