//! Where the admin API's bearer token comes from: config, or generated at
//! first start in the data dir (mode 0600). The check itself is `bearer`.

use std::path::{Path, PathBuf};

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The configured token, else the one in the data dir (created if missing).
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> std::io::Result<String> {
    if let Some(t) = configured {
        return Ok(t.to_owned());
    }
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is empty; remove it to have a new token made",
                path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = crate::secrets::random_id(32);
            crate::secrets::write_private(&path, format!("{token}\n").as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(None, dir.path()).unwrap();
        let b = load_or_create(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 32);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        assert_eq!(
            load_or_create(Some("configured-token-123"), dir.path()).unwrap(),
            "configured-token-123"
        );
    }
}
