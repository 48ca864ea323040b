//! Property tests of the YAML boundary ([`bosun_core::yaml`]) and of the byte-exact writer
//! ([`bosun_core::writeback::set_version`], [`bosun_core::writeback::revert_document`]), on
//! generated definition files ([`files`]) and on arbitrary and damaged input.

mod files;
mod parse;
mod writer;
