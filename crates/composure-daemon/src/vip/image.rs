//! The image VIP containers run: the daemon's own executable, with the shared libraries it
//! has loaded and its ELF interpreter, in a `FROM scratch` image.
//!
//! A host may reach no registry to pull a base image from, and a second binary would have to be
//! built and shipped beside `composure`. The running executable is always there and always
//! the same version as the daemon; `composure vip` is its hidden subcommand. The libraries
//! are the ones the process has mapped (from `/proc/self/maps`), so the copy runs in the
//! container exactly as it runs here, whatever the host's distribution.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use object::Endianness;
use object::elf::FileHeader64;
use object::read::elf::{FileHeader, ProgramHeader};

/// A build context for the VIP image, and the tag to build it as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VipImage {
    /// `composure-vip:<id>`, where the id changes with the executable.
    pub tag: String,
    /// `<data dir>/vip-image/<id>`: `Dockerfile` and `rootfs/`; `None` for an image that
    /// exists already.
    pub context: Option<PathBuf>,
}

const DOCKERFILE: &str = "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/composure\", \"vip\"]\n";

impl VipImage {
    /// An image the engine has already (tests over the simulator).
    pub fn existing(tag: &str) -> VipImage {
        VipImage {
            tag: tag.to_string(),
            context: None,
        }
    }

    /// The service fields that get the image: its tag, and how to build it when the engine
    /// lacks it.
    pub fn service_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        fields.insert("image".into(), self.tag.clone().into());
        if let Some(context) = &self.context {
            fields.insert(
                "build".into(),
                serde_json::json!({ "context": context.display().to_string(), "dockerfile": "Dockerfile" }),
            );
            fields.insert("pull_policy".into(), "missing".into());
        }
        fields
    }

    /// Prepares the build context from the running executable, unless it is there already.
    pub fn prepare(data_dir: &Path) -> std::io::Result<VipImage> {
        let exe = std::env::current_exe()?;
        let meta = std::fs::metadata(&exe)?;
        let mut hasher = DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        meta.len().hash(&mut hasher);
        meta.modified()?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .hash(&mut hasher);
        let id = format!("{:016x}", hasher.finish());
        let root = data_dir.join("vip-image");
        let context = root.join(&id);
        let image = VipImage {
            tag: format!("composure-vip:{id}"),
            context: Some(context.clone()),
        };
        if context.join("Dockerfile").is_file() {
            return Ok(image);
        }
        // Built aside and renamed into place, so a half-built context is never used; what
        // a failed build (a full disk) left is removed, now and by the next start.
        remove_unfinished(&root);
        let building = root.join(format!(".{id}.{}", std::process::id()));
        let built = build_context(&exe, &building, &context);
        if built.is_err() {
            let _ = std::fs::remove_dir_all(&building);
        }
        built.map(|()| image)
    }
}

/// Removes the half-built contexts of earlier failed starts (`.<id>.<pid>`).
pub(super) fn remove_unfinished(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.')
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove a half-built VIP image");
        }
    }
}

/// Copies the executable and its libraries into `building`, then renames it to `context`.
fn build_context(exe: &Path, building: &Path, context: &Path) -> std::io::Result<()> {
    let rootfs = building.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    std::fs::copy(exe, rootfs.join("composure"))?;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let exe_bytes = std::fs::read(exe)?;
    let files = shared_libraries(&maps)
        .into_iter()
        .chain(interpreter(&exe_bytes).map(PathBuf::from));
    for file in files {
        let Ok(relative) = file.strip_prefix("/") else {
            continue;
        };
        let dest = rootfs.join(relative);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // `copy` follows links: the image gets the file under the name the loader asks for.
        std::fs::copy(&file, &dest)?;
    }
    std::fs::write(building.join("Dockerfile"), DOCKERFILE)?;
    // Another daemon on the same data directory cannot run (the lock), but an earlier
    // one may have left the final directory behind.
    if context.exists() {
        std::fs::remove_dir_all(building)?;
    } else {
        std::fs::rename(building, context)?;
    }
    Ok(())
}

/// The shared objects a `/proc/<pid>/maps` text names (each once, in order).
pub(crate) fn shared_libraries(maps: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path: the path is the sixth field and may hold spaces.
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim) else {
            continue;
        };
        if !path.starts_with('/') || path.ends_with("(deleted)") {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or_default();
        let is_library = name.ends_with(".so") || name.contains(".so.");
        let path = PathBuf::from(path);
        if is_library && !found.contains(&path) {
            found.push(path);
        }
    }
    found
}

/// The program interpreter (`PT_INTERP`) a 64-bit ELF executable names, if any.
pub(crate) fn interpreter(exe: &[u8]) -> Option<String> {
    let header = FileHeader64::<Endianness>::parse(exe).ok()?;
    let endian = header.endian().ok()?;
    header
        .program_headers(endian, exe)
        .ok()?
        .iter()
        .find_map(|ph| ph.interpreter(endian, exe).ok().flatten())
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .map(str::to_string)
}
