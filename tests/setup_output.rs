//! `scripts/setup.sh` prints nothing on stdout, whatever the tools it runs print, so that
//! `scripts/demo.sh | jq` reads only the demo's JSON lines on a machine setup has to fill.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn setup_prints_nothing_on_stdout_even_while_it_installs_packages() {
    // dpkg says nothing is installed, so setup runs apt-get, which talks on stdout as the
    // real one does; the rest of setup finds its cache filled.
    let bin = std::env::temp_dir().join(format!("sd2-setup-stdout-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    script(&bin, "dpkg-query", "exit 1");
    script(
        &bin,
        "apt-get",
        "echo \"Reading package lists... (apt-get $*)\"; echo 'Setting up gstreamer1.0-tools'",
    );
    script(&bin, "sudo", "exec \"$@\"");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new(root().join("scripts/setup.sh"))
        .env("PATH", path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&bin).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Setting up gstreamer1.0-tools"),
        "apt-get ran: {stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "stdout is the product's"
    );
}
