//! Kernel version as the probe table compares it (major.minor; the patch level never decides
//! which symbol carries a role).
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Parses a `uname -r` release such as `6.1.0-27-amd64` or `6.12.9+bpo-amd64`.
    pub(crate) fn parse_release(release: &str) -> Option<Self> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    /// The running kernel's release string and version.
    pub fn running() -> anyhow::Result<(String, Self)> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_err(|e| anyhow::anyhow!("cannot read /proc/sys/kernel/osrelease: {e}"))?;
        let release = release.trim().to_string();
        let version = Self::parse_release(&release).ok_or_else(|| anyhow::anyhow!("cannot parse kernel release {release:?}"))?;
        Ok((release, version))
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_release_strings_parse() {
        assert_eq!(KernelVersion::parse_release("5.10.0-33-amd64"), Some(KernelVersion::new(5, 10)));
        assert_eq!(KernelVersion::parse_release("6.12.9+bpo-amd64"), Some(KernelVersion::new(6, 12)));
        assert_eq!(KernelVersion::parse_release("6.1.0-27-cloud-amd64"), Some(KernelVersion::new(6, 1)));
        assert_eq!(KernelVersion::parse_release("garbage"), None);
    }

    #[test]
    fn versions_order_numerically_not_lexically() {
        assert!(KernelVersion::new(6, 12) > KernelVersion::new(6, 9));
        assert!(KernelVersion::new(5, 10) < KernelVersion::new(6, 1));
    }
}
