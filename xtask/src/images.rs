//! The test images, built locally as OCI image layouts (one uncompressed, deterministic tar
//! layer each) and pushed to the loopback registries with skopeo.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::layout::{self, Layout};
use crate::progress;
use crate::registry::Registry;
use crate::util;

/// OCI media types.
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI config media type.
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed layer media type.
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image ready to be written as an OCI layout: its blobs and manifest digest.
pub struct Image {
    /// Repository name in the registry.
    pub repo: String,
    /// Tags to push.
    pub tags: Vec<String>,
    /// The layer tar.
    layer: Vec<u8>,
    /// The config JSON.
    config: Vec<u8>,
    /// The manifest JSON.
    manifest: Vec<u8>,
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
}

/// `sha256:<hex>` of some bytes.
fn sha256(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The OCI architecture name of this machine.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Image {
    /// Assembles config and manifest around a layer.
    fn new(repo: &str, tags: Vec<String>, layer: Vec<u8>, container_config: Value) -> Result<Self> {
        let layer_digest = sha256(&layer);
        let config = serde_json::to_vec(&json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": oci_arch(),
            "os": "linux",
            "config": container_config,
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "cargo xtask env up" }],
        }))?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": { "mediaType": MT_CONFIG, "digest": sha256(&config), "size": config.len() },
            "layers": [{ "mediaType": MT_LAYER, "digest": layer_digest, "size": layer.len() }],
        }))?;
        let digest = sha256(&manifest);
        Ok(Image {
            repo: repo.to_string(),
            tags,
            layer,
            config,
            manifest,
            digest,
        })
    }

    /// Writes the image as an OCI layout (replacing what was there).
    fn write_layout(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        let blobs = dir.join("blobs").join("sha256");
        util::mkdir(&blobs)?;
        for blob in [&self.layer, &self.config, &self.manifest] {
            let d = sha256(blob);
            let hex = d.trim_start_matches("sha256:");
            fs::write(blobs.join(hex), blob)?;
        }
        fs::write(
            dir.join("oci-layout"),
            serde_json::to_vec(&json!({ "imageLayoutVersion": "1.0.0" }))?,
        )?;
        let manifests: Vec<Value> = self
            .tags
            .iter()
            .map(|t| {
                json!({
                    "mediaType": MT_MANIFEST,
                    "digest": self.digest,
                    "size": self.manifest.len(),
                    "annotations": { "org.opencontainers.image.ref.name": t },
                })
            })
            .collect();
        fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": manifests }))?,
        )?;
        Ok(())
    }
}

/// Sets a path's permission bits.
fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// A deterministic tar of the top-level entries of `root` (GNU tar).
fn tar_dir(root: &Path) -> Result<Vec<u8>> {
    let mut entries: Vec<String> = fs::read_dir(root)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let out = root.with_extension("tar");
    util::run(
        util::cmd("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--format=gnu",
                "-C",
            ])
            .arg(root)
            .arg("-cf")
            .arg(&out)
            .arg("--")
            .args(&entries),
    )?;
    let data = fs::read(&out)?;
    let _ = fs::remove_file(&out);
    Ok(data)
}

/// A fresh, empty directory for a root filesystem.
fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    util::mkdir(dir)?;
    chmod(dir, 0o755)
}

/// The busybox version (major.minor) of /bin/busybox, for the second tag.
fn busybox_version(busybox: &Path) -> Result<String> {
    let out = util::output_timeout(
        &mut util::cmd(&busybox.to_string_lossy()),
        Duration::from_secs(10),
    )?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "BusyBox v1.35.0 (Debian ...) multi-call binary."
    let v = text
        .split_whitespace()
        .find_map(|w| {
            w.strip_prefix('v')
                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .context("cannot read busybox's version")?;
    let mut parts = v.split('.');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => Ok(format!("{a}.{b}")),
        _ => bail!("odd busybox version {v:?}"),
    }
}

/// The busybox image: static /bin/busybox, a link in /bin for every applet, passwd/group.
pub fn busybox(l: &Layout) -> Result<Image> {
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox is missing (package busybox-static)");
    }
    let version = busybox_version(&busybox)?;
    let root = l.images_dir().join("busybox-rootfs");
    fresh_dir(&root)?;
    for (d, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o755),
        ("root", 0o700),
        ("sys", 0o755),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
    ] {
        let p = root.join(d);
        util::mkdir(&p)?;
        chmod(&p, mode)?;
    }
    let bin = root.join("bin");
    fs::copy(&busybox, bin.join("busybox")).context("cannot copy /bin/busybox")?;
    chmod(&bin.join("busybox"), 0o755)?;
    let list = util::output(util::cmd(&busybox.to_string_lossy()).arg("--list"))?;
    let mut applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .collect();
    if !applets.contains(&"sh") {
        applets.push("sh");
    }
    for a in applets {
        symlink("busybox", bin.join(a))?;
    }
    symlink("../../bin/env", root.join("usr/bin/env"))?;
    for (path, content) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname", "busybox\n"),
    ] {
        let p = root.join(path);
        fs::write(&p, content)?;
        chmod(&p, 0o644)?;
    }
    let layer = tar_dir(&root)?;
    Image::new(
        layout::BUSYBOX_REPO,
        vec!["latest".into(), version],
        layer,
        json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        }),
    )
}

/// The host's Rust target triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let out = util::output(util::cmd("rustc").arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host:"))
        .map(|s| s.trim().to_string())
        .context("rustc -vV printed no host line")
}

/// Tells whether an ELF file has no program interpreter (is statically linked).
fn is_static_elf(path: &Path) -> Result<bool> {
    let data = fs::read(path)?;
    let get = |off: usize, len: usize| -> Result<u64> {
        let b = data.get(off..off + len).context("truncated ELF file")?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
    };
    if data.get(0..4) != Some(b"\x7fELF") || data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let phoff = usize::try_from(get(0x20, 8)?)?;
    let phentsize = usize::try_from(get(0x36, 2)?)?;
    let phnum = usize::try_from(get(0x38, 2)?)?;
    for i in 0..phnum {
        // PT_INTERP = 3
        if get(phoff + i * phentsize, 4)? == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Builds the static pause binary (src/bin/pause.rs) in its own target dir.
pub fn build_pause(l: &Layout) -> Result<PathBuf> {
    let triple = host_triple()?;
    let target_dir = l.pause_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    progress!(
        "building the static pause binary (target dir {})",
        target_dir.display()
    );
    let out = util::output_timeout(
        util::cmd(&cargo)
            .current_dir(&l.workspace)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_TARGET_DIR", &target_dir)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "xtask",
                "--bin",
                "pause",
                "--target",
            ])
            .arg(&triple),
        Duration::from_secs(900),
    )?;
    if !out.status.success() {
        bail!(
            "building the pause binary failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = target_dir.join(&triple).join("release").join("pause");
    if !is_static_elf(&bin)? {
        bail!("{} is dynamically linked", bin.display());
    }
    Ok(bin)
}

/// The pause image: our static /pause, run as 65535:65535 like upstream's.
pub fn pause(l: &Layout) -> Result<Image> {
    let bin = build_pause(l)?;
    let root = l.images_dir().join("pause-rootfs");
    fresh_dir(&root)?;
    fs::copy(&bin, root.join("pause")).context("cannot copy the pause binary")?;
    chmod(&root.join("pause"), 0o755)?;
    let layer = tar_dir(&root)?;
    Image::new(
        layout::PAUSE_REPO,
        vec![layout::PAUSE_TAG.into()],
        layer,
        json!({
            "Entrypoint": ["/pause"],
            "User": "65535:65535",
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        }),
    )
}

/// Pushes the image's tags that the registry lacks (or holds with another digest).
pub fn push(l: &Layout, image: &Image, reg: &Registry) -> Result<()> {
    let mut missing = Vec::new();
    for tag in &image.tags {
        let have = reg.manifest_digest(&image.repo, tag)?;
        if have.as_deref() != Some(image.digest.as_str()) {
            missing.push(tag.clone());
        }
    }
    if missing.is_empty() {
        progress!(
            "{}/{}:{} up to date ({})",
            reg.host,
            image.repo,
            image.tags.join(","),
            short(&image.digest)
        );
        return Ok(());
    }
    let dir = l.images_dir().join("oci").join(&image.repo);
    image.write_layout(&dir)?;
    for tag in missing {
        let dest = format!("docker://{}/{}:{tag}", reg.host, image.repo);
        progress!("pushing {} ({})", &dest[9..], short(&image.digest));
        let mut c = util::cmd("skopeo");
        c.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if reg.auth {
            c.arg("--dest-creds")
                .arg(format!("{}:{}", layout::AUTH_USER, reg.password()?));
        }
        c.arg(format!("oci:{}:{tag}", dir.display())).arg(&dest);
        util::run(&mut c)?;
        let now = reg.manifest_digest(&image.repo, &tag)?;
        if now.as_deref() != Some(image.digest.as_str()) {
            bail!(
                "after the push {dest} has digest {now:?}, expected {}",
                image.digest
            );
        }
    }
    Ok(())
}

/// A short form of a digest for messages.
fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

/// The images and the registries each goes to.
pub fn ensure(l: &Layout) -> Result<()> {
    util::mkdir(&l.images_dir())?;
    let plain = Registry::plain(l);
    let auth = Registry::with_auth(l);
    let bb = busybox(l)?;
    push(l, &bb, &plain)?;
    let auth_bb = Image {
        tags: vec!["latest".into()],
        ..bb
    };
    push(l, &auth_bb, &auth)?;
    for tag in layout::BUSYBOX_GC_TAGS {
        push(l, &busybox_gc(&auth_bb, tag)?, &plain)?;
    }
    let p = pause(l)?;
    push(l, &p, &plain)?;
    Ok(())
}

/// A busybox image of its own id (a label tells it apart) for the image GC tests.
fn busybox_gc(busybox: &Image, tag: &str) -> Result<Image> {
    Image::new(
        layout::BUSYBOX_GC_REPO,
        vec![tag.to_owned()],
        busybox.layer.clone(),
        json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "Labels": { "io.kubelet-rs.test": format!("image-gc-{tag}") },
        }),
    )
}

/// What `status` checks: (registry, repo, tag).
pub fn expected(l: &Layout) -> Vec<(Registry, &'static str, String)> {
    let version = busybox_version(Path::new("/bin/busybox")).unwrap_or_else(|_| "latest".into());
    vec![
        (Registry::plain(l), layout::BUSYBOX_REPO, "latest".into()),
        (Registry::plain(l), layout::BUSYBOX_REPO, version),
        (
            Registry::plain(l),
            layout::PAUSE_REPO,
            layout::PAUSE_TAG.into(),
        ),
        (
            Registry::with_auth(l),
            layout::BUSYBOX_REPO,
            "latest".into(),
        ),
        (
            Registry::plain(l),
            layout::BUSYBOX_GC_REPO,
            layout::BUSYBOX_GC_TAGS[0].into(),
        ),
        (
            Registry::plain(l),
            layout::BUSYBOX_GC_REPO,
            layout::BUSYBOX_GC_TAGS[1].into(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn image_digest_depends_only_on_content() -> Result<()> {
        let make = || {
            Image::new(
                "x",
                vec!["latest".into()],
                b"layer".to_vec(),
                json!({"Cmd": ["sh"]}),
            )
        };
        let (a, b) = (make()?, make()?);
        assert_eq!(a.digest, b.digest);
        let manifest: Value = serde_json::from_slice(&a.manifest)?;
        assert_eq!(manifest["layers"][0]["mediaType"], MT_LAYER);
        assert_eq!(manifest["layers"][0]["digest"], sha256(b"layer"));
        assert_eq!(manifest["config"]["digest"], sha256(&a.config));
        Ok(())
    }

    #[test]
    fn a_normal_test_binary_is_not_static() -> Result<()> {
        assert!(!is_static_elf(&std::env::current_exe()?)?);
        Ok(())
    }
}
