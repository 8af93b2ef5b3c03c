//! The virtual disks of a local VM, read from its `.vmx` file.
//!
//! A VMX file is `key = "value"` lines. Disks are the `scsiX:Y`, `sataX:Y`,
//! `nvmeX:Y` and `ideX:Y` devices whose `.present` is true and whose
//! `.fileName` names a VMDK; CD-ROMs (`deviceType = "cdrom-..."`,
//! `"atapi-cdrom"`), passthrough devices and disks on a controller marked
//! not present are left out. Keys are case-insensitive, as VMware reads
//! them, and values may carry VMware's `|XX` hex escapes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One virtual disk of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmxDisk {
    /// The device it is attached as, e.g. `scsi0:0`: the export's name.
    pub device: String,
    /// `.fileName` as the VMX gives it.
    pub file_name: String,
    /// The descriptor's path, relative names resolved against the VMX's
    /// directory.
    pub path: PathBuf,
}

/// Bus prefixes, in the order their disks are listed (so a usual boot
/// disk, `scsi0:0`, comes first and is the default export).
const BUSES: &[&str] = &["scsi", "sata", "nvme", "ide"];

/// Why a VMX file gives no disk to serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmxError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The VMX file.
        path: PathBuf,
        /// The read's error.
        source: std::io::Error,
    },
    /// The file lists no disk that can be served.
    #[error(
        "{} lists no virtual disk (no scsiX:Y, sataX:Y, nvmeX:Y or ideX:Y device \
         with a .vmdk fileName and present = \"TRUE\")",
        path.display()
    )]
    NoDisks {
        /// The VMX file.
        path: PathBuf,
    },
}

/// Reads the VMX at `path` and lists its disks.
///
/// # Errors
/// [`VmxError::Read`] when it cannot be read, [`VmxError::NoDisks`] when
/// it holds no disk.
pub fn read(path: &Path) -> Result<Vec<VmxDisk>, VmxError> {
    let text = std::fs::read(path).map_err(|source| VmxError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&text);
    let dir = path.parent().unwrap_or(Path::new("."));
    let disks = parse(&text, dir);
    if disks.is_empty() {
        return Err(VmxError::NoDisks {
            path: path.to_path_buf(),
        });
    }
    Ok(disks)
}

/// The disks described by VMX `text`, relative paths resolved against `dir`.
pub fn parse(text: &str, dir: &Path) -> Vec<VmxDisk> {
    let entries = entries(text);
    let get = |k: &str| entries.get(&k.to_ascii_lowercase()).map(String::as_str);
    let truthy = |k: &str| get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut disks: Vec<(usize, u32, u32, VmxDisk)> = Vec::new();
    for key in entries.keys() {
        let Some(device) = key.strip_suffix(".filename") else {
            continue;
        };
        let Some((bus, controller, unit)) = device_address(device) else {
            continue;
        };
        let bus_name = BUSES[bus];
        let controller_key = format!("{bus_name}{controller}.present");
        let controller_absent =
            get(&controller_key).is_some_and(|v| v.eq_ignore_ascii_case("false"));
        if !truthy(&format!("{device}.present")) || controller_absent {
            continue;
        }
        let device_type = get(&format!("{device}.devicetype"))
            .unwrap_or("")
            .to_ascii_lowercase();
        if device_type.contains("cdrom") || device_type.contains("passthru") {
            continue;
        }
        let Some(file_name) = get(key).filter(|f| f.to_ascii_lowercase().ends_with(".vmdk")) else {
            continue;
        };
        let path = Path::new(file_name);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        };
        disks.push((
            bus,
            controller,
            unit,
            VmxDisk {
                device: format!("{bus_name}{controller}:{unit}"),
                file_name: file_name.to_string(),
                path,
            },
        ));
    }
    disks.sort_by_key(|(b, c, u, _)| (*b, *c, *u));
    disks.into_iter().map(|(_, _, _, d)| d).collect()
}

/// `scsi0:1` -> (bus index, 0, 1), for the buses that hold disks.
fn device_address(device: &str) -> Option<(usize, u32, u32)> {
    let bus = BUSES.iter().position(|b| device.starts_with(b))?;
    let (controller, unit) = device[BUSES[bus].len()..].split_once(':')?;
    let number = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    Some((bus, number(controller)?, number(unit)?))
}

/// Every `key = value` line, keys lower-cased, values unquoted and
/// unescaped; the last occurrence of a key wins, as in VMware's reader.
fn entries(text: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        map.insert(key.trim().to_ascii_lowercase(), unescape(value));
    }
    map
}

/// Decodes `|XX` escapes (VMware writes `"` as `|22`, `|` as `|7C`).
fn unescape(v: &str) -> String {
    if !v.contains('|') {
        return v.to_string();
    }
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'|', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMX: &str = r#".encoding = "UTF-8"
config.version = "8"
displayName = "web server"
# A comment = "ignored"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "web.vmdk"
SCSI0:1.Present = "true"
scsi0:1.fileName = "/abs/data disk.vmdk"
scsi0:1.deviceType = "scsi-hardDisk"
scsi0:2.present = "FALSE"
scsi0:2.fileName = "gone.vmdk"
scsi0:3.present = "TRUE"
scsi0:3.fileName = "tape"
scsi0:3.deviceType = "scsi-passthru"
scsi1.present = "FALSE"
scsi1:0.present = "TRUE"
scsi1:0.fileName = "on-absent-controller.vmdk"
sata0.present = "TRUE"
sata0:1.present = "TRUE"
sata0:1.fileName = "sub/sata|22q|22.vmdk"
sata0:0.present = "TRUE"
sata0:0.fileName = "/isos/install.iso"
sata0:0.deviceType = "cdrom-image"
nvme0:0.present = "TRUE"
nvme0:0.fileName = "fast.VMDK"
ide1:0.present = "TRUE"
ide1:0.fileName = "ide-disk.vmdk"
ide1:1.present = "TRUE"
ide1:1.fileName = "cd.vmdk"
ide1:1.deviceType = "atapi-cdrom"
ide0:0.fileName = "no-present-key.vmdk"
ethernet0.present = "TRUE"
ethernet0.fileName = "not-a-disk.vmdk"
floppy0.fileName = "floppy.vmdk"
floppy0.present = "TRUE"
"#;

    #[test]
    fn finds_disks_and_skips_the_rest() {
        let disks = parse(VMX, Path::new("/vms/web"));
        let got: Vec<(&str, &str, &Path)> = disks
            .iter()
            .map(|d| (d.device.as_str(), d.file_name.as_str(), d.path.as_path()))
            .collect();
        assert_eq!(
            got,
            [
                ("scsi0:0", "web.vmdk", Path::new("/vms/web/web.vmdk")),
                (
                    "scsi0:1",
                    "/abs/data disk.vmdk",
                    Path::new("/abs/data disk.vmdk")
                ),
                (
                    "sata0:1",
                    "sub/sata\"q\".vmdk",
                    Path::new("/vms/web/sub/sata\"q\".vmdk")
                ),
                ("nvme0:0", "fast.VMDK", Path::new("/vms/web/fast.VMDK")),
                (
                    "ide1:0",
                    "ide-disk.vmdk",
                    Path::new("/vms/web/ide-disk.vmdk")
                ),
            ]
        );
    }

    #[test]
    fn addresses_and_escapes() {
        assert_eq!(device_address("scsi0:15"), Some((0, 0, 15)));
        assert_eq!(device_address("nvme3:2"), Some((2, 3, 2)));
        assert_eq!(device_address("scsi0"), None);
        assert_eq!(device_address("scsi0:x"), None);
        assert_eq!(device_address("scsi+0:1"), None);
        assert_eq!(device_address("usb0:0"), None);
        assert_eq!(unescape("a|7Cb|22|zz|"), "a|b\"|zz|");
    }

    #[test]
    fn read_reports_vmx_without_disks() {
        let dir = std::env::temp_dir().join(format!("vmx-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.vmx");
        std::fs::write(&f, "displayName = \"x\"\nide1:0.present = \"TRUE\"\nide1:0.deviceType = \"cdrom-raw\"\nide1:0.fileName = \"a.vmdk\"\n").unwrap();
        let e = read(&f).unwrap_err();
        assert!(matches!(e, VmxError::NoDisks { .. }), "{e}");
        assert!(e.to_string().contains("lists no virtual disk"), "{e}");
        let e = read(&dir.join("missing.vmx")).unwrap_err();
        assert!(matches!(e, VmxError::Read { .. }), "{e}");
        assert!(e.to_string().contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
