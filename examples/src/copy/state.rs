//! The resume state: the offset below which a copy is known to be in
//! place, written only after the data is synced.

use std::path::{Path, PathBuf};

use vddk::SECTOR_SIZE;

/// The resume state kept beside a copy: which copy it is and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    /// Where it is stored.
    pub path: PathBuf,
    /// Identifies the copy: source and destination as the user gave them.
    pub id: String,
    /// The image size, which must match when resuming.
    pub total: u64,
}

impl StateFile {
    fn text(&self, done: u64) -> String {
        format!(
            "# vddk-copy resume state: delete this file to start over\ncopy={}\ntotal={}\ndone={done}\n",
            self.id, self.total
        )
    }

    /// Records that everything below `done` is copied (write, then rename,
    /// so a kill never leaves half a file).
    pub fn save(&self, done: u64) -> std::io::Result<()> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.text(done))?;
        std::fs::rename(&tmp, &self.path)
    }

    /// The offset to resume from, checking that the state is for this copy.
    ///
    /// # Errors
    /// No state file, or one written for another copy.
    pub fn load(&self) -> Result<u64, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            format!(
                "cannot read the resume state {}: {e}; without it, start the copy again without \
                 --resume (or give --resume-from BYTES)",
                self.path.display()
            )
        })?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(str::to_string)
        };
        let bad = |what: &str| {
            format!(
                "the resume state {} {what}; delete it and start the copy again",
                self.path.display()
            )
        };
        if field("copy").as_deref() != Some(self.id.as_str()) {
            return Err(bad("belongs to another copy"));
        }
        if field("total").and_then(|t| t.parse::<u64>().ok()) != Some(self.total) {
            return Err(bad("is for an image of another size"));
        }
        field("done")
            .and_then(|d| d.parse::<u64>().ok())
            .filter(|d| *d <= self.total && d % SECTOR_SIZE == 0)
            .ok_or_else(|| bad("is damaged"))
    }

    /// Removes the state after a finished copy.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The state file used by default for a copy writing or reading `local`.
pub fn default_state_path(local: &Path) -> PathBuf {
    let mut name = local.as_os_str().to_owned();
    name.push(".vddk-copy-state");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_mismatch() {
        let dir = std::env::temp_dir().join(format!("vddk-copy-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = StateFile {
            path: dir.join("s"),
            id: "a -> b".into(),
            total: 4096,
        };
        assert!(s.load().unwrap_err().contains("without it"));
        s.save(1024).unwrap();
        assert_eq!(s.load(), Ok(1024));
        let other = StateFile {
            id: "c -> d".into(),
            ..s.clone()
        };
        assert!(other.load().unwrap_err().contains("another copy"));
        let bigger = StateFile {
            total: 8192,
            ..s.clone()
        };
        assert!(bigger.load().unwrap_err().contains("another size"));
        s.remove();
        assert!(s.load().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
