//! Start-up: a missing library is reported with every path tried and the
//! fix, a failed InitEx with its code; neither uses up the process's one
//! InitEx, and after Exit a new init says why it cannot be. One test:
//! InitEx is once per process.

use vddk::{Error, InitOptions, Vddk, VixCode};

#[test]
fn missing_library_is_explained_and_a_later_init_works() {
    let err = Vddk::init(InitOptions::new().libdir("/nonexistent/vddk")).unwrap_err();
    assert!(matches!(err, Error::Load(_)), "{err:?}");
    // The loader's report is printed once, not again as a source.
    assert!(std::error::Error::source(&err).is_none_or(|s| s.to_string() != err.to_string()));
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
    // A failed InitEx (the fake refuses a malformed knob) is reported with
    // its call and code, and does not use up the process's InitEx either.
    std::env::set_var("FAKE_VDDK_LATENCY_US", "fast");
    let err = Vddk::init(InitOptions::new().libdir(vddk_tests::fake_libdir())).unwrap_err();
    let f = err.vix().expect("a VIX error from InitEx");
    assert_eq!(
        (f.call(), f.code()),
        ("VixDiskLib_InitEx", VixCode::INVALID_ARG),
        "{err}"
    );
    std::env::remove_var("FAKE_VDDK_LATENCY_US");

    let v = Vddk::init(InitOptions::new().libdir(vddk_tests::fake_libdir()))
        .expect("init after a failed load");
    assert!(v.library_path().starts_with(vddk_tests::fake_libdir()));
    assert!(matches!(
        Vddk::init(InitOptions::new()),
        Err(Error::AlreadyInitialized)
    ));

    // The last owner gone, the library has exited for good.
    drop(v);
    let err = Vddk::init(InitOptions::new().libdir(vddk_tests::fake_libdir())).unwrap_err();
    assert!(matches!(err, Error::Exited), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("has exited") && !text.contains("clone the existing"),
        "{text}"
    );
}
