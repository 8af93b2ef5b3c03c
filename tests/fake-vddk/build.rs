fn main() {
    // Consumers dlopen the library as libvixDiskLib.so.N; give it the soname
    // VDDK 8 has so tools that read it (ldd, readelf) see what they expect.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvixDiskLib.so.8");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/shim.c");
    // Log callbacks take a va_list, which only C can build.
    cc::Build::new()
        .file("src/shim.c")
        .warnings(true)
        .compile("fake_vddk_shim");
}
