//! Functions a library may or may not export, and the capability set that
//! summarises which ones it does.

use crate::bindings;

macro_rules! optional_functions {
    ($( $field:ident, $has:ident : $ty:ident = $sym:literal; )*) => {
        /// Optional VDDK functions, each `None` when the loaded library
        /// lacks it. Check before calling; nothing here panics.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use vddk_sys::{Library, LoadOptions};
        ///
        /// let lib = Library::load(&LoadOptions::default())?;
        /// match lib.optional().prepare_for_access {
        ///     // Called with the C contract's arguments, while `lib` lives.
        ///     Some(_prepare_for_access) => {}
        ///     None => eprintln!("VDDK {} cannot PrepareForAccess", lib.major_version()),
        /// }
        /// assert_eq!(lib.optional().capabilities(), lib.capabilities());
        /// # Ok::<(), vddk_sys::LoadError>(())
        /// ```
        #[derive(Clone, Copy)]
        #[non_exhaustive]
        pub struct OptionalFunctions {
            $(
                #[doc = concat!("`", $sym, "`, if exported.")]
                pub $field: bindings::$ty,
            )*
        }

        impl OptionalFunctions {
            /// Looks every optional symbol up in `lib`.
            ///
            /// # Safety
            /// `lib` must be a VDDK library whose symbols have the
            /// signatures declared in `include/vddk_abi.h`, and the
            /// returned pointers must not be called after it is unloaded.
            pub(crate) unsafe fn resolve(lib: &libloading::Library) -> Self {
                OptionalFunctions {
                    $(
                        // SAFETY: guaranteed by the caller (see above).
                        $field: unsafe {
                            lib.get::<bindings::$ty>(concat!($sym, "\0").as_bytes())
                        }
                        .ok()
                        .and_then(|sym| *sym),
                    )*
                }
            }

            /// The capability set these functions amount to.
            pub fn capabilities(&self) -> Capabilities {
                Capabilities { $( $field: self.$field.is_some(), )* }
            }
        }

        /// Which optional VDDK functions the loaded library exports.
        ///
        /// # Examples
        ///
        /// What a program might report from [`Library::capabilities`](crate::Library::capabilities):
        ///
        /// ```
        /// use vddk_sys::Capabilities;
        ///
        /// fn missing(caps: &Capabilities) -> Vec<&'static str> {
        ///     caps.iter().filter(|&(_, has)| !has).map(|(name, _)| name).collect()
        /// }
        /// // The default is a library with none of them.
        /// let none = Capabilities::default();
        /// assert!(!none.has_cleanup());
        /// assert_eq!(missing(&none), Capabilities::ALL);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct Capabilities {
            $( $field: bool, )*
        }

        impl Capabilities {
            $(
                #[doc = concat!("Whether `", $sym, "` is available.")]
                pub fn $has(&self) -> bool {
                    self.$field
                }
            )*

            /// Every optional function's symbol name with its presence,
            /// in a fixed order (as nbdkit's `--dump-plugin` lists them).
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, bool)> {
                [$( ($sym, self.$field), )*].into_iter()
            }

            /// Names of every optional function this crate knows.
            pub const ALL: &'static [&'static str] = &[$( $sym, )*];
        }
    };
}

optional_functions! {
    allocate_connect_params, has_allocate_connect_params: VixDiskLib_AllocateConnectParamsFn = "VixDiskLib_AllocateConnectParams";
    free_connect_params, has_free_connect_params: VixDiskLib_FreeConnectParamsFn = "VixDiskLib_FreeConnectParams";
    prepare_for_access, has_prepare_for_access: VixDiskLib_PrepareForAccessFn = "VixDiskLib_PrepareForAccess";
    end_access, has_end_access: VixDiskLib_EndAccessFn = "VixDiskLib_EndAccess";
    cleanup, has_cleanup: VixDiskLib_CleanupFn = "VixDiskLib_Cleanup";
    read_metadata, has_read_metadata: VixDiskLib_ReadMetadataFn = "VixDiskLib_ReadMetadata";
    write_metadata, has_write_metadata: VixDiskLib_WriteMetadataFn = "VixDiskLib_WriteMetadata";
    get_metadata_keys, has_get_metadata_keys: VixDiskLib_GetMetadataKeysFn = "VixDiskLib_GetMetadataKeys";
    create_child, has_create_child: VixDiskLib_CreateChildFn = "VixDiskLib_CreateChild";
    clone, has_clone: VixDiskLib_CloneFn = "VixDiskLib_Clone";
    grow, has_grow: VixDiskLib_GrowFn = "VixDiskLib_Grow";
    shrink, has_shrink: VixDiskLib_ShrinkFn = "VixDiskLib_Shrink";
    defragment, has_defragment: VixDiskLib_DefragmentFn = "VixDiskLib_Defragment";
    rename, has_rename: VixDiskLib_RenameFn = "VixDiskLib_Rename";
    unlink, has_unlink: VixDiskLib_UnlinkFn = "VixDiskLib_Unlink";
    is_attach_possible, has_is_attach_possible: VixDiskLib_IsAttachPossibleFn = "VixDiskLib_IsAttachPossible";
    attach, has_attach: VixDiskLib_AttachFn = "VixDiskLib_Attach";
    space_needed_for_clone, has_space_needed_for_clone: VixDiskLib_SpaceNeededForCloneFn = "VixDiskLib_SpaceNeededForClone";
    check_repair, has_check_repair: VixDiskLib_CheckRepairFn = "VixDiskLib_CheckRepair";
    get_connect_params, has_get_connect_params: VixDiskLib_GetConnectParamsFn = "VixDiskLib_GetConnectParams";
}

impl std::fmt::Debug for OptionalFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OptionalFunctions")
            .field(&self.capabilities())
            .finish()
    }
}
