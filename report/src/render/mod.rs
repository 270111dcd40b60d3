//! One renderer per `--format`.

pub mod csv;
pub mod html;
pub mod markdown;
pub mod text;
