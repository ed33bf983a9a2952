//! Bodies over 100 MB pass through in both directions without being held in the proxy's memory:
//! `docker build`, `docker cp` both ways, `docker save | docker load`, `docker export`.

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use weave_tests::proxy::rss_kib_of;
use weave_tests::{Proxy, Scope, test_image};

const BIG: usize = 110 * 1024 * 1024;

/// How much the proxy's resident memory may grow while 110 MB pass through it. Streaming keeps
/// it to buffers and allocator slack; holding one body would add 110 MB.
const RSS_BUDGET_KIB: u64 = 32 * 1024;

/// Samples the proxy's RSS in the background and remembers the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    baseline: u64,
}

impl RssWatch {
    fn start(proxy: &Proxy) -> Self {
        let pid = proxy.pid();
        let baseline = proxy.rss_kib();
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(baseline)),
        );
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_kib_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
            baseline,
        }
    }

    /// Stops sampling and asserts the growth stayed in budget.
    #[track_caller]
    fn assert_flat(mut self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let growth = self
            .peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.baseline);
        eprintln!(
            "{what}: proxy RSS baseline {} KiB, peak growth {growth} KiB",
            self.baseline
        );
        assert!(
            growth < RSS_BUDGET_KIB,
            "{what}: proxy RSS grew by {growth} KiB"
        );
    }
}

fn big_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut file = fs::File::create(&path).unwrap();
    // Varying content, so a truncation or a swapped block shows up in the checksum.
    let block: Vec<u8> = (0..1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for i in 0..BIG / block.len() {
        file.write_all(&[i as u8]).unwrap();
        file.write_all(&block[1..]).unwrap();
    }
    path
}

fn md5sum(path: &std::path::Path) -> String {
    let out = std::process::Command::new("md5sum")
        .arg(path)
        .output()
        .unwrap();
    first_word(&String::from_utf8(out.stdout).unwrap())
}

fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn build_with_a_large_context_then_save_load_and_export() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let docker = proxy.docker();
    let context = tempfile::tempdir().unwrap();
    let big = big_file(context.path(), "big");
    let want = md5sum(&big);
    fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {image}\nCOPY big /big\nRUN md5sum /big > /big.md5\n"),
    )
    .unwrap();
    let tag = format!("{}:big", scope.name("img"));
    let label = scope.label();

    docker.run(&["version"]).ok();
    let watch = RssWatch::start(&proxy);
    docker.build(&scope, &tag, context.path());
    watch.assert_flat("docker build, 110 MB context");
    let inside = docker
        .run(&["run", "--rm", "--label", &label, &tag, "cat", "/big.md5"])
        .ok();
    assert_eq!(first_word(&inside.stdout), want);

    let archive = context.path().join("image.tar");
    let watch = RssWatch::start(&proxy);
    docker
        .run(&["save", "-o", archive.to_str().unwrap(), &tag])
        .ok();
    watch.assert_flat("docker save");
    assert!(fs::metadata(&archive).unwrap().len() > BIG as u64);

    docker.run(&["rmi", &tag]).ok();
    let watch = RssWatch::start(&proxy);
    let loaded = docker.run(&["load", "-i", archive.to_str().unwrap()]).ok();
    watch.assert_flat("docker load");
    assert!(loaded.stdout.contains(&tag), "{loaded:?}");

    let name = scope.name("export");
    docker
        .run(&["create", "--label", &label, "--name", &name, &tag, "true"])
        .ok();
    let watch = RssWatch::start(&proxy);
    let export = docker
        .command(&["export", &name])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    watch.assert_flat("docker export");
    assert!(export.status.success());
    assert!(
        export.stdout.len() > BIG,
        "export was {} bytes",
        export.stdout.len()
    );
}

#[test]
fn copy_both_ways() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let docker = proxy.docker();
    let dir = tempfile::tempdir().unwrap();
    let big = big_file(dir.path(), "big");
    let want = md5sum(&big);
    let name = scope.name("cp");
    docker
        .run(&[
            "run",
            "-d",
            "--label",
            &scope.label(),
            "--name",
            &name,
            &image,
            "sleep",
            "300",
        ])
        .ok();
    docker.run(&["version"]).ok();

    let watch = RssWatch::start(&proxy);
    docker
        .run(&["cp", big.to_str().unwrap(), &format!("{name}:/big")])
        .ok();
    watch.assert_flat("docker cp into the container");
    let inside = docker.run(&["exec", &name, "md5sum", "/big"]).ok();
    assert_eq!(first_word(&inside.stdout), want);

    let back = dir.path().join("back");
    let watch = RssWatch::start(&proxy);
    docker
        .run(&["cp", &format!("{name}:/big"), back.to_str().unwrap()])
        .ok();
    watch.assert_flat("docker cp out of the container");
    assert_eq!(md5sum(&back), want);
}
