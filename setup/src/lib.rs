//! `setup`: tunes a Raspberry Pi 5 for vr-stream and reports how tuned a box is.
//!
//! [`checks`] is the one place that decides whether each item is tuned (`setup --check`
//! and `quick-bench` both report it); [`plan`] computes the files `--apply` writes;
//! [`fsx`] writes them all-or-nothing; [`state`] keeps the backups `--revert` restores;
//! [`live`] reads and changes the running system (only when the root is `/`).
//! [`cmdline`], [`sysctl`], [`limits`] and [`cpus`] are pure parsers and editors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apply;
pub mod checks;
pub mod cmdline;
pub mod cpus;
pub mod fixture;
pub mod fsx;
pub mod limits;
pub mod live;
pub mod plan;
pub mod rootfs;
pub mod state;
pub mod sysctl;
