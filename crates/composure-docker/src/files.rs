//! The host files a container needs before it is created: secret and config files, and the
//! labels of `label_file`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, chown};
use std::path::Path;

use composure_runtime::RuntimeError;
use indexmap::IndexMap;

use crate::container::{FileContent, FileToWrite};

/// Writes each file atomically (a temporary file renamed into place), with its mode and
/// owner. Folders are created private to this user (`0700`): the engine, not the
/// container, opens them to bind-mount the files.
pub(crate) fn write_files(service: &str, files: &[FileToWrite]) -> Result<(), RuntimeError> {
    for file in files {
        write_file(file).map_err(|e| match e {
            WriteError::Spec(message) => {
                RuntimeError::InvalidSpec(format!("service `{service}`: {message}"))
            }
            WriteError::Io(err) => RuntimeError::Other(format!(
                "service `{service}`: cannot write {}: {err}",
                file.path.display()
            )),
        })?;
    }
    Ok(())
}

enum WriteError {
    Spec(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(err: std::io::Error) -> Self {
        WriteError::Io(err)
    }
}

fn write_file(file: &FileToWrite) -> Result<(), WriteError> {
    let bytes = match &file.content {
        FileContent::Text(text) => text.clone().into_bytes(),
        FileContent::Env(var) => std::env::var(var)
            .map_err(|_| {
                WriteError::Spec(format!(
                    "environment variable `{var}` is not set in the daemon's environment"
                ))
            })?
            .into_bytes(),
        FileContent::Copy(source) => std::fs::read(source)
            .map_err(|e| WriteError::Spec(format!("cannot read `{}`: {e}", source.display())))?,
    };
    let dir = file
        .path
        .parent()
        .ok_or_else(|| WriteError::Spec(format!("no folder for {}", file.path.display())))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        file.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    {
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(file.mode))?;
    if file.uid.is_some() || file.gid.is_some() {
        chown(&tmp, file.uid, file.gid)?;
    }
    std::fs::rename(&tmp, &file.path)?;
    Ok(())
}

/// Removes a container's written files; a folder that is not there is fine.
pub(crate) fn remove_dir(dir: &Path) {
    // Best effort: a leftover folder holds no running state and is rewritten on the next
    // create of the same name.
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads `label_file`s (`KEY=VALUE` lines, `#` comments), later files winning.
pub(crate) fn read_label_files(
    service: &str,
    paths: &[String],
) -> Result<IndexMap<String, String>, RuntimeError> {
    let mut out = IndexMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RuntimeError::InvalidSpec(format!(
                "service `{service}`: cannot read label_file `{path}`: {e}"
            ))
        })?;
        out.extend(parse_labels(&text));
    }
    Ok(out)
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_files_skip_comments_and_blank_lines() {
        assert_eq!(
            parse_labels("# c\n\na=1\n b = two \nflag\n"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "two".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn files_are_written_with_their_mode_and_env_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1/secrets/token");
        let files = [FileToWrite {
            path: path.clone(),
            content: FileContent::Text("s3cret".into()),
            mode: 0o440,
            uid: None,
            gid: None,
        }];
        write_files("web", &files).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o440);

        let missing = [FileToWrite {
            path: dir.path().join("x"),
            content: FileContent::Env("COMPOSURE_TEST_SURELY_UNSET_VAR".into()),
            mode: 0o444,
            uid: None,
            gid: None,
        }];
        let err = write_files("web", &missing).unwrap_err().to_string();
        assert!(err.contains("COMPOSURE_TEST_SURELY_UNSET_VAR"), "{err}");
        remove_dir(&dir.path().join("c1"));
        assert!(!path.exists());
    }
}
