//! The data dir holds live invite tokens (the ledger), SCRAM keys (accounts)
//! and node secrets: only the node's user may read it. It is created 0700
//! with files 0600, and an older dir with looser modes is tightened at start,
//! each change logged.

use std::path::Path;

use super::NodeError;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

fn error(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::DataDir {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dir` if needed and makes it and everything in it private.
pub fn prepare(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(error(dir))?;
    tighten(dir)
}

/// A random secret kept in the data dir (made at first use, mode 0600).
pub fn secret(dir: &Path, name: &str) -> Result<Vec<u8>, NodeError> {
    let path = dir.join(name);
    crate::secrets::load_or_create(&path, 32).map_err(error(&path))
}

#[cfg(unix)]
fn tighten(path: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).map_err(error(path))?;
    // A link is the operator's choice (a certificate from elsewhere, say).
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let wanted = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    let mode = meta.permissions().mode() & 0o777;
    if mode & !wanted != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & wanted))
            .map_err(error(path))?;
        tracing::info!(
            path = %path.display(),
            from = format!("{mode:o}"),
            to = format!("{:o}", mode & wanted),
            "tightened the permissions of a data dir entry"
        );
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(error(path))? {
            tighten(&entry.map_err(error(path))?.path())?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path) -> Result<(), NodeError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_old_loose_dir_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("ledger")).unwrap();
        std::fs::write(dir.join("accounts.redb"), b"x").unwrap();
        std::fs::write(dir.join("ledger/shard-0.redb"), b"x").unwrap();
        for (p, m) in [
            (dir.clone(), 0o755),
            (dir.join("ledger"), 0o775),
            (dir.join("accounts.redb"), 0o644),
            (dir.join("ledger/shard-0.redb"), 0o666),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("ledger")), 0o700);
        assert_eq!(mode(&dir.join("accounts.redb")), 0o600);
        assert_eq!(mode(&dir.join("ledger/shard-0.redb")), 0o600);
        // Already private: nothing to do, and tighter modes stay as they are.
        std::fs::set_permissions(
            dir.join("accounts.redb"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir.join("accounts.redb")), 0o400);
    }
}
