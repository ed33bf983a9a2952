//! The busybox test image, built FROM scratch from Debian's static busybox and cached by content.
//!
//! No registry is reachable from the machines this suite runs on, so every image is built here.
//! The image is tagged `weave-test-busybox:<content hash>` (so a changed recipe rebuilds it) and
//! `busybox:latest` (so tests can say `busybox` as a user would).

use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use crate::cli::Docker;
use crate::daemon::target_daemon;

const DOCKERFILE: &str = r#"FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
"#;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      app:x:1000:1000:app:/home/app:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n";

/// Where downloads and build contexts are cached between runs (`WEAVE_TEST_CACHE` overrides).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("WEAVE_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/weave-test"))
}

/// The test image's reference in the target daemon, building it first if it is missing.
///
/// Safe to call from many test processes at once: the build runs under a file lock.
pub fn test_image() -> String {
    let cache = cache_dir();
    fs::create_dir_all(&cache).expect("the test cache directory can be created");
    let lock = fs::File::create(cache.join("image.lock")).expect("the image lock file opens");
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).expect("the image lock is taken");

    let busybox = static_busybox(&cache);
    let context = cache.join("busybox-context");
    write_context(&context, &busybox);
    let tag = format!("weave-test-busybox:{:016x}", content_hash(&context));
    let docker = Docker::new(target_daemon());
    if docker
        .run(&["image", "inspect", "--format", "{{.Id}}", &tag])
        .code
        != 0
    {
        let context_arg = context.to_str().expect("cache path is UTF-8");
        docker.run(&["build", "-q", "-t", &tag, context_arg]).ok();
    }
    docker.run(&["tag", &tag, "busybox:latest"]).ok();
    tag
}

/// Debian's static busybox on this machine (for `ping` and `nslookup` run in network
/// namespaces, which have no image), downloaded first if it is missing.
pub fn busybox_binary() -> PathBuf {
    let cache = cache_dir();
    fs::create_dir_all(&cache).expect("the test cache directory can be created");
    let lock = fs::File::create(cache.join("image.lock")).expect("the image lock file opens");
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).expect("the image lock is taken");
    static_busybox(&cache)
}

/// Debian's statically linked busybox, downloaded once (no install: it conflicts with `busybox`).
fn static_busybox(cache: &Path) -> PathBuf {
    let binary = cache.join("busybox-static/bin/busybox");
    if binary.exists() {
        return binary;
    }
    let download = cache.join("deb");
    fs::create_dir_all(&download).expect("the download directory can be created");
    let fetch = || {
        Command::new("apt-get")
            .args(["download", "-q", "busybox-static"])
            .current_dir(&download)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !fetch() {
        // A fresh machine may have no package lists yet.
        let updated = Command::new("apt-get").args(["update", "-q"]).status();
        assert!(updated.is_ok_and(|s| s.success()), "apt-get update failed");
        assert!(fetch(), "apt-get download busybox-static failed");
    }
    let deb = fs::read_dir(&download)
        .expect("the download directory lists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".deb"))
        .expect("busybox-static .deb downloaded");
    let extracted = cache.join("busybox-static");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&extracted)
        .status()
        .expect("dpkg-deb runs");
    assert!(status.success(), "dpkg-deb -x {} failed", deb.display());
    assert!(
        binary.exists(),
        "{} missing after extraction",
        binary.display()
    );
    binary
}

fn write_context(context: &Path, busybox: &Path) {
    let rootfs = context.join("rootfs");
    for dir in ["bin", "etc", "tmp", "root", "home/app", "var/tmp"] {
        fs::create_dir_all(rootfs.join(dir)).expect("rootfs directories can be created");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("tmp is world-writable");
    fs::write(context.join("Dockerfile"), DOCKERFILE).expect("Dockerfile written");
    fs::write(rootfs.join("etc/passwd"), PASSWD).expect("passwd written");
    fs::write(rootfs.join("etc/group"), GROUP).expect("group written");
    let target = rootfs.join("bin/busybox");
    if !target.exists() {
        fs::copy(busybox, &target).expect("busybox copied into the context");
    }
}

/// A hash of everything that goes into the image, so the tag changes when the recipe does.
fn content_hash(context: &Path) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for file in [
        "Dockerfile",
        "rootfs/etc/passwd",
        "rootfs/etc/group",
        "rootfs/bin/busybox",
    ] {
        fs::read(context.join(file))
            .expect("context file readable")
            .hash(&mut hasher);
    }
    hasher.finish()
}
