//! How an operation's typed error reaches the user: each operation has one `thiserror` enum
//! that implements [`OpError`]; the command line turns it into an `anyhow::Error` with
//! [`OpError::into_report`], which keeps the `Error:` / `Caused by:` / `Hint:` output and
//! still downcasts to the typed error.
//!
//! Owns only the conversion; it must not classify errors (each operation decides its hints
//! where it knows what went wrong).

use crate::error::Hint;

/// An operation's error: what went wrong (the enum's variants) and what the user can do.
pub trait OpError: std::error::Error + Send + Sync + Sized + 'static {
    /// What to do about it, when the operation knows.
    fn hint(&self) -> Option<String>;

    /// An error raised below the operation (a task's lock, the engine, a sync) that is
    /// passed on as it came, with its own causes, hints and Ctrl-C marker: `Ok` with it.
    fn passthrough(self) -> Result<anyhow::Error, Self>;

    /// As an `anyhow::Error` for `cli::report`: the hint is found by
    /// `crate::error::find_hint`, and `downcast_ref::<Self>()` still works.
    fn into_report(self) -> anyhow::Error {
        let this = match self.passthrough() {
            Ok(inner) => return inner,
            Err(this) => this,
        };
        match this.hint() {
            Some(hint) => {
                let message = this.to_string();
                anyhow::Error::new(this).context(Hint { message, hint })
            }
            None => anyhow::Error::new(this),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Demo {
        #[error("the thing is missing")]
        Missing { name: String },
        #[error("cannot read it")]
        Unreadable(#[source] std::io::Error),
        #[error(transparent)]
        Below(anyhow::Error),
    }

    impl OpError for Demo {
        fn hint(&self) -> Option<String> {
            match self {
                Demo::Missing { name } => Some(format!("create {name}")),
                _ => None,
            }
        }
        fn passthrough(self) -> Result<anyhow::Error, Self> {
            match self {
                Demo::Below(e) => Ok(e),
                other => Err(other),
            }
        }
    }

    #[test]
    fn a_typed_error_renders_once_with_its_hint_and_still_downcasts() {
        let e = Demo::Missing { name: "x".into() }.into_report();
        assert_eq!(
            crate::error::render(&e),
            vec![
                "Error: the thing is missing".to_string(),
                "Hint: create x".to_string()
            ]
        );
        assert!(matches!(
            e.downcast_ref::<Demo>(),
            Some(Demo::Missing { .. })
        ));
        let e = Demo::Unreadable(std::io::Error::other("disk gone")).into_report();
        assert_eq!(
            crate::error::render(&e),
            vec![
                "Error: cannot read it".to_string(),
                "Caused by: disk gone".to_string()
            ]
        );
    }

    #[test]
    fn an_error_from_below_passes_through_with_its_marker_and_hint() {
        let e = Demo::Below(anyhow::Error::new(crate::error::Interrupted)).into_report();
        assert!(crate::error::is_interrupted(&e));
        let e = Demo::Below(crate::error::hinted("busy", "wait")).into_report();
        assert_eq!(crate::error::find_hint(&e), Some("wait"));
    }
}
