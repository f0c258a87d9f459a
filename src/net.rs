//! runtime.json `interfaces`: links created in, or moved into, the container's network
//! namespace between `create` and `start`.

use crate::bundle::Bundle;
use crate::undo::Undo;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interfaces[{index}] `{name}`: acting on interfaces is not built yet")]
    NotBuilt { index: usize, name: String },
}

/// Sets up every interface of the bundle for the container whose init is `pid`.
pub fn apply(bundle: &Bundle, _pid: i32, _undo: &mut Undo) -> Result<(), NetError> {
    match bundle.runtime.interfaces.first() {
        Some(i) => Err(NetError::NotBuilt {
            index: 0,
            name: i.name.clone(),
        }),
        None => Ok(()),
    }
}
