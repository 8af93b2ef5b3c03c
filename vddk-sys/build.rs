// The only build-time input is the default library directory, which
// packagers may override with VDDK_DEFAULT_LIBDIR; nothing is linked.
fn main() {
    println!("cargo:rerun-if-env-changed=VDDK_DEFAULT_LIBDIR");
    println!("cargo:rerun-if-changed=build.rs");
}
