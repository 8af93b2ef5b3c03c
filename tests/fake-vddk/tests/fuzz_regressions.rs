//! Inputs found by fuzzing the VMDK engine (fuzz/, `ci/fuzz`), each kept as
//! a test that failed before the fix it names.

use vddk_fake::vmdk::{VmdkDisk, VmdkError};
use vddk_tests::scratch_dir;

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A zlib stream holding `data` in one stored (uncompressed) deflate block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("one stored block holds under 64 KiB");
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&(!len).to_le_bytes());
    z.extend_from_slice(data);
    z.extend_from_slice(&adler32(data).to_be_bytes());
    z
}

/// A one-grain compressed sparse extent (stream markers, 128-sector grain)
/// whose only grain inflates to `grain_data`: header at sector 0, grain
/// directory at 1, grain table at 2..6, the grain's marker at 6.
fn compressed_extent(grain_data: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 6 * 512];
    f[0..4].copy_from_slice(b"KDMV");
    f[4..8].copy_from_slice(&3u32.to_le_bytes()); // version
    f[8..12].copy_from_slice(&((1u32 << 16) | (1 << 17)).to_le_bytes()); // compressed, markers
    f[12..20].copy_from_slice(&128u64.to_le_bytes()); // capacity
    f[20..28].copy_from_slice(&128u64.to_le_bytes()); // grain size
    f[44..48].copy_from_slice(&512u32.to_le_bytes()); // GTEs per GT
    f[56..64].copy_from_slice(&1u64.to_le_bytes()); // GD offset
    f[64..72].copy_from_slice(&6u64.to_le_bytes()); // overhead
    f[77..79].copy_from_slice(&1u16.to_le_bytes()); // deflate
    f[512..516].copy_from_slice(&2u32.to_le_bytes()); // GD[0] -> GT at sector 2
    f[1024..1028].copy_from_slice(&6u32.to_le_bytes()); // GT[0] -> grain at sector 6
    let z = zlib_stored(grain_data);
    f.extend_from_slice(&0u64.to_le_bytes()); // marker: LBA
    f.extend_from_slice(&(z.len() as u32).to_le_bytes()); // marker: size
    f.extend_from_slice(&z);
    f.resize(f.len().div_ceil(512) * 512, 0);
    f
}

/// A compressed grain that inflates to less than a whole grain: reading a
/// sector past its data indexed the inflated buffer out of bounds
/// (`data[from..avail]` with `from > data.len()` in `SparseExtent::read_grain`,
/// src/vmdk/sparse.rs). Fuzz target vmdk_sparse_open; the input is this
/// file with an 8-byte probe of 5.
#[test]
fn short_compressed_grain_reads_zeroes_past_its_data() {
    let dir = scratch_dir("short-compressed-grain");
    let path = dir.join("s.vmdk");
    std::fs::write(&path, compressed_extent(&[0x77; 512])).expect("write the extent");
    let mut d = VmdkDisk::open(&path, true, false).expect("a well-formed compressed extent opens");
    assert_eq!(d.capacity(), 128);

    let mut buf = [0u8; 512];
    d.read(0, &mut buf).expect("the sector the grain holds");
    assert_eq!(buf, [0x77; 512]);

    // Sector 5 lies past the 512 inflated bytes: it reads as zeroes (or
    // fails as corrupt), and never takes the process down.
    let mut buf = [0xeeu8; 512];
    match d.read(5, &mut buf) {
        Ok(()) => assert_eq!(
            buf, [0u8; 512],
            "past the inflated data the grain reads as zeroes"
        ),
        Err(VmdkError::Invalid(m)) => assert!(!m.is_empty()),
        Err(e) => panic!("unexpected error {e:?}"),
    }
    // A read spanning the end of the data: data, then zeroes.
    let mut two = [0xeeu8; 1024];
    if d.read(0, &mut two).is_ok() {
        assert_eq!(two[..512], [0x77; 512]);
        assert_eq!(two[512..], [0u8; 512]);
    }
}
