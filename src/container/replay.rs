//! A cleanup carried out from its record, by a process that did not record it (a
//! supervisor started again): what a launch or a container left, as data.

use crate::oci_runtime::{OciRuntime, RuntimeError};
use crate::paths;
use crate::undo::{PlannedStep, Replay, UndoFailures};
use nix::mount::{MntFlags, umount2};
use std::path::Path;

/// Carries out a recorded cleanup. A step already done (by a process killed half way
/// through it) counts as done; a step that was recorded without a way to redo it is
/// reported.
pub(crate) fn replay(rt: &OciRuntime, plan: &[PlannedStep]) -> UndoFailures {
    let mut failures = Vec::new();
    for step in plan {
        log::debug!("cleanup: {}", step.what);
        let r = match &step.replay {
            Some(Replay::DeleteContainer { name }) => {
                let r = match rt.delete(name, true) {
                    Err(RuntimeError::Failed { message, .. })
                        if message.contains("does not exist") || message.contains("not exist") =>
                    {
                        Ok(())
                    }
                    r => r.map_err(|e| crate::error_chain(&e)),
                };
                rt.forget_logs(name);
                r
            }
            Some(Replay::Unmount { path }) => {
                match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                    Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Some(Replay::Remove { path, dir }) => {
                paths::remove_created(path, *dir).map_err(|e| e.to_string())
            }
            None => Err("recorded without a way to redo it after a restart of lkinit".into()),
        };
        if let Err(e) = r {
            log::warn!("cleanup: {}: {e}", step.what);
            failures.push(format!("{}: {e}", step.what));
        }
    }
    UndoFailures(failures)
}

/// Clears what a launch that was cut short (lkinit killed during it, before anything was
/// recorded) can have left: the runtime's container and the bundle's rootfs and overlay
/// tmpfs mounts. Directories it may have created inside the rootfs cannot be known.
pub(crate) fn clear_interrupted_launch(
    rt: &OciRuntime,
    name: &str,
    bundle_dir: &Path,
) -> UndoFailures {
    let mut plan = vec![PlannedStep {
        what: format!("{} delete --force {name}", rt.bin),
        replay: Some(Replay::DeleteContainer {
            name: name.to_string(),
        }),
    }];
    for dir in ["rootfs", "tmp"] {
        let p = bundle_dir.join(dir);
        // A mount may have been stacked once per attempt.
        for _ in 0..8 {
            if !crate::mountinfo::is_mount_point(&p) {
                break;
            }
            let _ = umount2(&p, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
        }
        if crate::mountinfo::is_mount_point(&p) {
            plan.push(PlannedStep {
                what: format!("unmount {}", p.display()),
                replay: Some(Replay::Unmount { path: p }),
            });
        }
    }
    replay(rt, &plan)
}
