//! Struct layouts checked against the offsets VDDK documents for Linux
//! x86_64 (VDDK 7.0+). bindgen's own layout tests only prove that Rust and
//! clang agree on our header; these prove the header says what VDDK does.

use std::mem::{align_of, offset_of, size_of};
use vddk_sys::*;

#[test]
fn connect_params_layout() {
    type P = VixDiskLibConnectParams;
    assert_eq!(size_of::<P>(), 128);
    assert_eq!(align_of::<P>(), 8);
    assert_eq!(offset_of!(P, vmxSpec), 0);
    assert_eq!(offset_of!(P, serverName), 8);
    assert_eq!(offset_of!(P, thumbPrint), 16);
    assert_eq!(offset_of!(P, reserved1), 24);
    assert_eq!(offset_of!(P, credType), 32);
    assert_eq!(offset_of!(P, creds), 40);
    assert_eq!(offset_of!(P, port), 64);
    assert_eq!(offset_of!(P, nfcHostPort), 68);
    assert_eq!(offset_of!(P, reserved3), 72);
    assert_eq!(offset_of!(P, reserved4), 80);
    assert_eq!(offset_of!(P, reserved5), 88);
    assert_eq!(offset_of!(P, spec), 96);
    assert_eq!(offset_of!(P, specType), 120);
    assert_eq!(size_of::<VixDiskLibCreds>(), 24);
    assert_eq!(offset_of!(VixDiskLibUidPasswdCreds, password), 8);
    assert_eq!(offset_of!(VixDiskLibSessionIdCreds, userName), 8);
    assert_eq!(offset_of!(VixDiskLibSessionIdCreds, key), 16);
    assert_eq!(offset_of!(VixDiskLibVStorageObjectSpec, datastoreMoRef), 8);
    assert_eq!(offset_of!(VixDiskLibVStorageObjectSpec, ssId), 16);
}

#[test]
fn info_layout() {
    type I = VixDiskLibInfo;
    assert_eq!(size_of::<VixDiskLibGeometry>(), 12);
    assert_eq!(offset_of!(VixDiskLibGeometry, heads), 4);
    assert_eq!(offset_of!(VixDiskLibGeometry, sectors), 8);
    assert_eq!(size_of::<I>(), 64);
    assert_eq!(offset_of!(I, biosGeo), 0);
    assert_eq!(offset_of!(I, physGeo), 12);
    assert_eq!(offset_of!(I, capacity), 24);
    assert_eq!(offset_of!(I, adapterType), 32);
    assert_eq!(offset_of!(I, numLinks), 36);
    assert_eq!(offset_of!(I, parentFileNameHint), 40);
    assert_eq!(offset_of!(I, uuid), 48);
    assert_eq!(offset_of!(I, logicalSectorSize), 56);
    assert_eq!(offset_of!(I, physicalSectorSize), 60);
}

#[test]
fn create_params_and_block_list_layout() {
    type C = VixDiskLibCreateParams;
    assert_eq!(size_of::<C>(), 32);
    assert_eq!(offset_of!(C, diskType), 0);
    assert_eq!(offset_of!(C, adapterType), 4);
    assert_eq!(offset_of!(C, hwVersion), 8);
    assert_eq!(offset_of!(C, capacity), 16);
    assert_eq!(offset_of!(C, logicalSectorSize), 24);
    assert_eq!(offset_of!(C, physicalSectorSize), 28);
    assert_eq!(size_of::<VixDiskLibBlock>(), 16);
    assert_eq!(offset_of!(VixDiskLibBlock, length), 8);
    assert_eq!(offset_of!(VixDiskLibBlockList, numBlocks), 0);
    assert_eq!(offset_of!(VixDiskLibBlockList, blocks), 8);
}

#[test]
fn scalar_types_and_enums() {
    assert_eq!(size_of::<VixError>(), 8);
    assert_eq!(size_of::<Bool>(), 1);
    assert_eq!(size_of::<VixDiskLibCredType>(), 4);
    assert_eq!(size_of::<VixDiskLibDiskType>(), 4);
    assert_eq!(size_of::<VixDiskLibAdapterType>(), 4);
    assert_eq!(size_of::<VixDiskLibSpecType>(), 4);
}

#[test]
fn constants_match_vddk() {
    assert_eq!(VIXDISKLIB_SECTOR_SIZE, 512);
    assert_eq!(
        (
            VIXDISKLIB_FLAG_OPEN_UNBUFFERED,
            VIXDISKLIB_FLAG_OPEN_SINGLE_LINK,
            VIXDISKLIB_FLAG_OPEN_READ_ONLY
        ),
        (1, 2, 4)
    );
    assert_eq!(
        (
            VIXDISKLIB_FLAG_OPEN_COMPRESSION_ZLIB,
            VIXDISKLIB_FLAG_OPEN_COMPRESSION_FASTLZ,
            VIXDISKLIB_FLAG_OPEN_COMPRESSION_SKIPZ,
            VIXDISKLIB_FLAG_OPEN_COMPRESSION_MASK
        ),
        (16, 32, 64, 0x3f0)
    );
    assert_eq!(
        (
            VIXDISKLIB_DISK_MONOLITHIC_SPARSE,
            VIXDISKLIB_DISK_STREAM_OPTIMIZED
        ),
        (1, 6)
    );
    assert_eq!(
        (VIXDISKLIB_DISK_VMFS_SPARSE, VIXDISKLIB_DISK_UNKNOWN),
        (8, 256)
    );
    assert_eq!(
        (VIXDISKLIB_ADAPTER_IDE, VIXDISKLIB_ADAPTER_SCSI_LSILOGIC),
        (1, 3)
    );
    assert_eq!((VIXDISKLIB_CRED_UID, VIXDISKLIB_CRED_SESSIONID), (1, 2));
    assert_eq!(
        (VIXDISKLIB_HWVERSION_ESX30, VIXDISKLIB_HWVERSION_ESX65),
        (4, 13)
    );
    assert_eq!(
        (VIXDISKLIB_MIN_CHUNK_SIZE, VIXDISKLIB_MAX_CHUNK_NUMBER),
        (128, 512 * 1024)
    );
    assert_eq!(
        (VIX_E_FAIL, VIX_E_DISK_KEY_NOTFOUND, VIX_ASYNC),
        (1, 16052, 25000)
    );
    assert_eq!(
        (VIX_E_HOST_USER_PERMISSIONS, VIX_E_NET_HTTP_SSL_SECURITY),
        (3014, 30201)
    );
    assert_eq!(error_code(0xdead_0000_0001_0000 | 25000), 25000);
}
