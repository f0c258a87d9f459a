//! runtime.json `bindNS`: the container's namespaces bound on paths so later containers can
//! join them.

use crate::bundle::Bundle;
use crate::undo::Undo;

#[derive(Debug, thiserror::Error)]
pub enum NsBindError {
    #[error("bindNS.{kind}: binding namespaces is not built yet")]
    NotBuilt { kind: &'static str },
}

/// Binds `/proc/PID/ns/KIND` on each configured path.
pub fn apply(bundle: &Bundle, _pid: i32, _undo: &mut Undo) -> Result<(), NsBindError> {
    match bundle.runtime.bind_ns.entries().first() {
        Some((kind, _)) => Err(NsBindError::NotBuilt { kind }),
        None => Ok(()),
    }
}
