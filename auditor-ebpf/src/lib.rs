// Present so that auditor/build.rs can name this package as a build-dependency (cargo rebuilds
// the userspace crate when the eBPF crate changes). The programs live in main.rs.
#![no_std]
