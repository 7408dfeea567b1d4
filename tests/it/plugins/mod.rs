//! Each first-party plugin against its provider's documented behaviour,
//! in-process on the real host.

mod transform;
pub(crate) mod verify;
