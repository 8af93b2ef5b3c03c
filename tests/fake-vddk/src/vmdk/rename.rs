//! Renaming a disk: its descriptor and the extent files named after it
//! move together, and a failed step undoes the moves before it.

use std::path::{Path, PathBuf};

use super::link::{self, DescPlace};
use super::VmdkError;

/// The name an extent file takes when its disk is renamed from `old_stem`
/// to `new_stem`: names that start with the old disk's stem follow it.
fn renamed_extent(name: &str, old_stem: &str, new_stem: &str) -> String {
    match name.strip_prefix(old_stem) {
        Some(rest) if rest.starts_with(['-', '.']) => format!("{new_stem}{rest}"),
        _ => name.to_string(),
    }
}

/// Moves `from` to `to` unless `to` exists (rename(2) would replace it).
fn move_new(from: &Path, to: &Path) -> Result<(), VmdkError> {
    if to.symlink_metadata().is_ok() {
        return Err(VmdkError::AlreadyExists(to.to_path_buf()));
    }
    std::fs::rename(from, to).map_err(|e| link::not_found_or(e, from))
}

/// See [`super::rename`].
pub(super) fn rename(src: &Path, dst: &Path) -> Result<(), VmdkError> {
    let (mut desc, place) = link::read_descriptor(src)?;
    if dst.symlink_metadata().is_ok() {
        return Err(VmdkError::AlreadyExists(dst.to_path_buf()));
    }
    let stem = |p: &Path| {
        p.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let (old_stem, new_stem) = (stem(src), stem(dst));
    let dst_name = dst
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    // Extent files other than the descriptor's own file move first; each
    // move is undone if a later step fails.
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let undo = |moved: &[(PathBuf, PathBuf)]| {
        for (from, to) in moved.iter().rev() {
            let _ = std::fs::rename(to, from);
        }
    };
    let embedded_in_src = |name: &str| link::resolve(src, name) == src;
    for extent in &mut desc.extents {
        let Some(name) = extent.file.clone() else {
            continue;
        };
        if embedded_in_src(&name) {
            extent.file = Some(dst_name.clone());
            continue;
        }
        let new_name = if Path::new(&name).is_absolute() {
            name.clone()
        } else {
            renamed_extent(&name, &old_stem, &new_stem)
        };
        let (from, to) = (link::resolve(src, &name), link::resolve(dst, &new_name));
        if from != to {
            if let Err(e) = move_new(&from, &to) {
                undo(&moved);
                return Err(e);
            }
            moved.push((from, to));
        }
        extent.file = Some(new_name);
    }
    let r = match place {
        DescPlace::File(_) => link::write_descriptor(&desc, &DescPlace::File(dst.to_path_buf()))
            .and_then(|()| {
                std::fs::remove_file(src).map_err(|e| {
                    let _ = std::fs::remove_file(dst);
                    VmdkError::from(e)
                })
            }),
        DescPlace::Embedded { offset, size, .. } => move_new(src, dst).and_then(|()| {
            moved.push((src.to_path_buf(), dst.to_path_buf()));
            let at = DescPlace::Embedded {
                path: dst.to_path_buf(),
                offset,
                size,
            };
            link::write_descriptor(&desc, &at)
        }),
        DescPlace::None => move_new(src, dst),
    };
    if r.is_err() {
        undo(&moved);
    }
    r
}
