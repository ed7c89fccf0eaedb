//! The maintenance chroot on a tiny real image (the host's static busybox): commands
//! see the maintenance mounts, and the host never keeps one, whether the command
//! ends or is killed. These make mount namespaces and chroot, so they run as root
//! (CI does); the lib's unit tests stay runnable by a normal user.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diskless::image::chroot::{ChrootError, MountSource, chroot, plan, run};
use rustix::mount::{MountPropagationFlags, UnmountFlags, mount_bind, mount_change, unmount};

const BUSYBOX: &str = "/bin/busybox";

/// A tiny image, bind-mounted on itself as a shared mount for the test's life: a new
/// mount namespace copies it as a peer, so a mount made under it in there would
/// appear on the host too unless the chroot makes its namespace private (the host's
/// `/` may be private already, and then could not show that).
struct TinyImage {
    _shared: SharedMount,
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

/// One test at a time: a file being written (busybox copied into an image) is
/// inherited by a child another test forks at that moment, and exec of that file then
/// fails with ETXTBSY until that child has exec'd.
static SERIAL: Mutex<()> = Mutex::new(());

impl TinyImage {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

struct SharedMount(PathBuf);

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = unmount(&self.0, UnmountFlags::DETACH);
    }
}

/// An image of busybox alone, with the mount points the chroot needs and an about file.
fn tiny_image() -> TinyImage {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = busybox_image();
    mount_bind(dir.path(), dir.path()).expect("bind the image on itself");
    let shared = SharedMount(dir.path().to_path_buf());
    mount_change(dir.path(), MountPropagationFlags::SHARED).expect("make the image a shared mount");
    TinyImage { _shared: shared, dir, _serial: serial }
}

fn busybox_image() -> tempfile::TempDir {
    assert!(rustix::process::geteuid().is_root(), "the chroot tests make mount namespaces: run them as root");
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: these tests need the host's static busybox (qemu/setup installs busybox-static)"
    );
    let img = tempfile::tempdir().unwrap();
    let r = img.path();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "var/tmp", "etc/diskless"] {
        fs::create_dir_all(r.join(dir)).unwrap();
    }
    fs::copy(BUSYBOX, r.join("bin/busybox")).unwrap();
    fs::write(r.join("etc/diskless/about"), "tiny-image\nbusybox only, for the chroot tests\n").unwrap();
    img
}

fn shell(script: &str) -> Vec<OsString> {
    ["/bin/busybox", "sh", "-c", script].map(OsString::from).to_vec()
}

/// The mount points of `mountinfo` (the fifth field).
fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(str::to_string).collect()
}

/// The host's mounts below `dir` (the test's own shared mount on `dir` aside).
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let dir = fs::canonicalize(dir).unwrap();
    let prefix = format!("{}/", dir.to_str().unwrap());
    mount_points(&fs::read_to_string("/proc/self/mountinfo").unwrap())
        .into_iter()
        .filter(|point| point.starts_with(&prefix))
        .collect()
}

/// The text of `path` once a line is written, while `running` runs.
fn wait_for_file<T: std::fmt::Debug>(
    path: &Path,
    running: std::thread::JoinHandle<T>,
) -> (String, std::thread::JoinHandle<T>) {
    let start = Instant::now();
    loop {
        if running.is_finished() {
            panic!("ended before writing {}: {:?}", path.display(), running.join());
        }
        match fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => return (text, running),
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the process when dropped, so that a failed assertion does not leave a
/// `sleep 600` holding the test's output open.
struct KillOnDrop(Option<i32>);

impl KillOnDrop {
    fn kill(mut self) {
        kill(self.0.take().unwrap()).unwrap();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill(pid);
        }
    }
}

fn kill(pid: i32) -> rustix::io::Result<()> {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::KILL)
}

/// Every process whose mount namespace is `namespace` (a `/proc/PID/ns/mnt` link text).
fn processes_in(namespace: &Path) -> Vec<PathBuf> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|entry| fs::read_link(entry.path().join("ns/mnt")).is_ok_and(|link| link == namespace))
        .map(|entry| entry.path())
        .collect()
}

#[test]
fn a_command_sees_the_maintenance_mounts_and_the_host_keeps_none() {
    let img = tiny_image();
    let cache = tempfile::tempdir().unwrap();
    let script =
        "ls /proc/self > /tmp/ls && cat /proc/mounts > /tmp/mounts && echo kept > /var/tmp/v && ls /dev > /tmp/dev";

    let status = chroot(img.path(), cache.path(), &shell(script)).unwrap();

    assert!(status.success(), "{status}");
    let tmp = cache.path().join("tiny-image/tmp");
    assert!(fs::read_to_string(tmp.join("ls")).unwrap().lines().any(|l| l == "mountinfo"), "a new /proc inside");
    let inside = fs::read_to_string(tmp.join("mounts")).unwrap();
    let points: Vec<String> = inside.lines().filter_map(|l| l.split(' ').nth(1)).map(str::to_string).collect();
    for point in ["/dev", "/proc", "/sys", "/tmp", "/var/tmp"] {
        assert!(points.iter().any(|p| p == point), "{point} not mounted inside:\n{inside}");
    }
    assert!(inside.lines().any(|l| l.starts_with("proc /proc proc ")), "{inside}");
    assert!(fs::read_to_string(tmp.join("dev")).unwrap().lines().any(|l| l == "null"), "the host's /dev inside");
    assert_eq!(fs::read_to_string(cache.path().join("tiny-image/var-tmp/v")).unwrap(), "kept\n");
    for dir in ["tmp", "var-tmp"] {
        let mode = fs::metadata(cache.path().join("tiny-image").join(dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777, "{dir}");
    }
    // The image's own /tmp got nothing: the command wrote into the cache.
    assert_eq!(fs::read_dir(img.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(host_mounts_under(img.path()), Vec::<String>::new());
}

#[test]
fn a_command_is_found_on_the_images_path_and_its_exit_status_returned() {
    let img = tiny_image();
    let script = img.path().join("usr/local/sbin/only-in-image");
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    fs::write(&script, "#!/bin/busybox sh\nexit 7\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let status = chroot(img.path(), cache.path(), &[OsString::from("only-in-image")]).unwrap();
    assert_eq!(status.code(), Some(7));
}

#[test]
fn the_default_shell_gets_the_prompt_from_the_about_file() {
    let img = tiny_image();
    // No bash: the chroot falls back to /bin/sh, here a script that records its prompt.
    fs::write(img.path().join("bin/sh"), "#!/bin/busybox sh\necho \"$PS1|$debian_chroot|$PATH\" > /tmp/prompt\n")
        .unwrap();
    fs::set_permissions(img.path().join("bin/sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let cache = tempfile::tempdir().unwrap();

    let status = chroot(img.path(), cache.path(), &[]).unwrap();

    assert!(status.success(), "{status}");
    assert_eq!(
        fs::read_to_string(cache.path().join("tiny-image/tmp/prompt")).unwrap(),
        "(tiny-image) \\w# |tiny-image|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    assert_eq!(host_mounts_under(img.path()), Vec::<String>::new());
}

#[test]
fn a_command_killed_with_sigkill_leaves_no_mount_behind() {
    let img = tiny_image();
    let cache = tempfile::tempdir().unwrap();
    let image_root = img.path().to_path_buf();
    let cache_dir = cache.path().to_path_buf();
    let running = std::thread::spawn(move || {
        chroot(&image_root, &cache_dir, &shell("echo $$ > /tmp/pid; exec /bin/busybox sleep 600"))
    });

    let (pid, running) = wait_for_file(&cache.path().join("tiny-image/tmp/pid"), running);
    let pid: i32 = pid.trim().parse().unwrap();
    let child = KillOnDrop(Some(pid));
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let namespace = fs::read_link(proc_dir.join("ns/mnt")).unwrap();
    assert_ne!(namespace, fs::read_link("/proc/self/ns/mnt").unwrap(), "the command has its own mount namespace");
    // Its namespace has the mounts (mount points as the chrooted command sees them)...
    let theirs = mount_points(&fs::read_to_string(proc_dir.join("mountinfo")).unwrap());
    for point in ["/dev", "/proc", "/sys", "/tmp", "/var/tmp"] {
        assert!(theirs.iter().any(|p| p == point), "{point} not in the command's namespace: {theirs:?}");
    }
    // ...which never reach the host, not even while it runs.
    assert_eq!(host_mounts_under(img.path()), Vec::<String>::new());

    child.kill();
    let status = running.join().unwrap().unwrap();

    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert_eq!(host_mounts_under(img.path()), Vec::<String>::new());
    // The namespace, and with it every maintenance mount, is gone with its last process.
    assert_eq!(processes_in(&namespace), Vec::<PathBuf>::new());
}

#[test]
fn a_command_missing_from_the_image_is_an_exec_error_naming_it() {
    let img = tiny_image();
    let cache = tempfile::tempdir().unwrap();
    let e = chroot(img.path(), cache.path(), &[OsString::from("/usr/bin/apt-get")]).unwrap_err();
    assert!(matches!(&e, ChrootError::Exec { program, .. } if program == "/usr/bin/apt-get"), "{e}");
    assert!(e.to_string().contains("is it in the image?"), "{e}");
    assert_eq!(host_mounts_under(img.path()), Vec::<String>::new());
}

#[test]
fn a_mount_point_that_is_a_symlink_out_of_the_image_stays_inside_it() {
    let img = tiny_image();
    let outside = tempfile::tempdir().unwrap();
    fs::remove_dir(img.path().join("var/tmp")).unwrap();
    // Resolved on the host, this would bind the cache over the host's directory.
    symlink(outside.path(), img.path().join("var/tmp")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let e = chroot(img.path(), cache.path(), &shell("true")).unwrap_err();
    assert!(matches!(&e, ChrootError::MountPoint { target, .. } if target == Path::new("/var/tmp")), "{e}");

    // A symlink that stays inside the image is followed inside it.
    fs::remove_file(img.path().join("var/tmp")).unwrap();
    symlink("/tmp", img.path().join("var/tmp")).unwrap();
    let status = chroot(img.path(), cache.path(), &shell("echo x > /var/tmp/through")).unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(fs::read_to_string(cache.path().join("tiny-image/var-tmp/through")).unwrap(), "x\n");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_mount_failing_in_the_child_is_reported_as_that_mount() {
    let img = tiny_image();
    let cache = tempfile::tempdir().unwrap();
    let mut plan = plan(img.path(), cache.path(), &shell("true")).unwrap();
    plan.mounts[3].source = MountSource::Bind { from: "/nonexistent/cache".into(), recursive: false };

    let e = run(&plan).unwrap_err();

    assert!(
        matches!(&e, ChrootError::Mount { from, target, source, .. }
            if from == "/nonexistent/cache" && target == Path::new("/tmp")
                && source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("mounting /nonexistent/cache on "), "{e}");
    assert_eq!(host_mounts_under(img.path()), Vec::<String>::new());
}
