//! Start-up: a missing library is reported with every path tried and the
//! fix, and does not use up the process's one InitEx. One test: InitEx is
//! once per process.

use vddk::{Error, InitOptions, Vddk};

#[test]
fn missing_library_is_explained_and_a_later_init_works() {
    let err = Vddk::init(InitOptions::new().libdir("/nonexistent/vddk")).unwrap_err();
    assert!(matches!(err, Error::Load { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/vddk/lib64/libvixDiskLib.so.9"),
        "{text}"
    );
    assert!(
        text.contains("/nonexistent/vddk/libvixDiskLib.so.5"),
        "{text}"
    );
    assert!(
        text.contains("libdir=") && text.contains("VDDK_LIBDIR"),
        "{text}"
    );

    std::env::set_var("FAKE_VDDK_STRICT", "1");
    let v = Vddk::init(InitOptions::new().libdir(vddk_tests::fake_libdir()))
        .expect("init after a failed load");
    assert!(v.library_path().starts_with(vddk_tests::fake_libdir()));
    assert!(matches!(
        Vddk::init(InitOptions::new()),
        Err(Error::AlreadyInitialized)
    ));
}
