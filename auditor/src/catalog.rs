//! The built-in holder catalog: in-tree kernel code whose raw lookups have known semantics (vfio's
//! per-range release, KVM's MMU notifier, the kernel's own bookkeeping lookups). This module is the
//! data only, `catalog.toml` in the user policy's format: `policy.rs` parses it
//! ([`crate::policy::Policy::catalog`]) and [`crate::policy::Policy::load`] layers it under the
//! user's policy, so the catalog sits below the policy and names nothing of it.

/// The name the catalog's rules give as their source.
pub const FILE: &str = "catalog.toml";

/// The catalog's text (policy TOML, docs/policy.md).
pub const TEXT: &str = include_str!("catalog.toml");
