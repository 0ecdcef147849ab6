//! Node secrets kept in the data dir, readable by the owner only.

use std::io::Write;
use std::path::Path;

use rand::RngCore;

/// Writes a file that only the owner may read (mode 0600 on Unix), replacing it
/// atomically so a crash never leaves half a key. The temporary file is made
/// afresh (`O_EXCL`): a file or symlink already at its name (a crash's
/// leftover, or planted) is removed, never written through, so the key never
/// lands in a file someone else owns or can read.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a random secret, creating it at first use.
pub fn load_or_create(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == len => Ok(bytes),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} has the wrong length; remove it to make a new one",
                path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; len];
            rand::rng().fill_bytes(&mut bytes);
            write_private(path, &bytes)?;
            Ok(bytes)
        }
        Err(e) => Err(e),
    }
}

/// A random URL-safe identifier with `bytes` bytes of entropy.
pub fn random_id(bytes: usize) -> String {
    use base64::Engine as _;
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_planted_temporary_file_never_receives_the_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let planted = dir.path().join("planted");
        std::fs::write(&planted, b"").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        let key = dir.path().join("node.key");
        std::os::unix::fs::symlink(&planted, key.with_extension("tmp")).unwrap();
        write_private(&key, b"secret").unwrap();
        assert_eq!(std::fs::read(&planted).unwrap(), b"");
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
