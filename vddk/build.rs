//! Compiles the small C shim that formats VDDK's `(fmt, va_list)` log
//! messages: stable Rust cannot walk a C `va_list`.

fn main() {
    println!("cargo:rerun-if-changed=src/raw/log_shim.c");
    cc::Build::new()
        .file("src/raw/log_shim.c")
        .warnings(true)
        .compile("vddk_log_shim");
}
