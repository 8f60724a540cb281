//! Language stack detection: which stack layer the sandbox image gets.

use std::path::Path;

/// Stacks with a built-in layer, in detection order.
pub const STACKS: &[(&str, &[&str])] = &[
    ("rust", &["Cargo.toml"]),
    ("go", &["go.mod"]),
    ("node", &["package.json"]),
    (
        "python",
        &["pyproject.toml", "requirements.txt", "setup.py", "Pipfile"],
    ),
    ("java", &["pom.xml", "build.gradle", "build.gradle.kts"]),
];

/// Detect the stack of the work tree at `root` from its marker files; `default` otherwise.
pub fn detect(root: &Path) -> &'static str {
    STACKS
        .iter()
        .find(|(_, markers)| markers.iter().any(|m| root.join(m).is_file()))
        .map_or("default", |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_marker_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path()), "default");
        for (marker, stack) in [
            ("pom.xml", "java"),
            ("requirements.txt", "python"),
            ("package.json", "node"),
            ("go.mod", "go"),
            ("Cargo.toml", "rust"),
        ] {
            std::fs::write(dir.path().join(marker), "").unwrap();
            assert_eq!(detect(dir.path()), stack, "after adding {marker}");
        }
    }

    #[test]
    fn a_directory_named_like_a_marker_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("Cargo.toml")).unwrap();
        assert_eq!(detect(dir.path()), "default");
    }
}
