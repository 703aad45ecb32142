//! Running stock PostgreSQL binaries from a process that may be root.
//!
//! PostgreSQL refuses to run as root, so when we are root its binaries run
//! as the OS user [`POSTGRES_OS_USER`], and the directories they write are
//! handed to that user first.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// OS user that runs PostgreSQL binaries when the caller is root.
pub const POSTGRES_OS_USER: &str = "postgres";

fn postgres_user() -> anyhow::Result<nix::unistd::User> {
    nix::unistd::User::from_name(POSTGRES_OS_USER)?.with_context(|| {
        format!("running as root needs an OS user {POSTGRES_OS_USER:?} to run PostgreSQL binaries")
    })
}

/// A command for the PostgreSQL binary at `path`, run as
/// [`POSTGRES_OS_USER`] when this process is root. With
/// `die_with_parent`, it is killed when the calling thread's process dies
/// (`PR_SET_PDEATHSIG`), for work that must not outlive its caller.
pub fn pg_command(path: &Path, die_with_parent: bool) -> anyhow::Result<Command> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(path);
    let user = if nix::unistd::geteuid().is_root() {
        let user = postgres_user()?;
        cmd.env("HOME", &user.dir).env("USER", POSTGRES_OS_USER);
        Some((user.uid, user.gid))
    } else {
        None
    };
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (setgroups, setgid, setuid, prctl).
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user {
                nix::unistd::setgroups(&[gid])?;
                nix::unistd::setgid(gid)?;
                nix::unistd::setuid(uid)?;
            }
            if die_with_parent {
                // After the credential change, which clears the setting.
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Gives `path` (and, with `recursive`, everything below it) to
/// [`POSTGRES_OS_USER`] when running as root, so that PostgreSQL binaries
/// can write there. A no-op otherwise.
pub fn hand_over(path: &Path, recursive: bool) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let user = postgres_user()?;
    let chown = |p: &Path| {
        nix::unistd::chown(p, Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot give {} to {POSTGRES_OS_USER}", p.display()))
    };
    chown(path)?;
    if recursive && path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
                let p = entry.path();
                chown(&p)?;
                if entry.file_type()?.is_dir() {
                    stack.push(p);
                }
            }
        }
    }
    Ok(())
}
