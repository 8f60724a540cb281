//! How an operation's typed error reaches the user: each operation has one `thiserror` enum
//! that implements [`OpError`]; the command line turns it into an `anyhow::Error` with
//! [`OpError::into_report`], which passes an error from below on as it came (its causes,
//! hints and Ctrl-C marker intact) and still downcasts to the typed error. Hints are found
//! by type, in one place: `crate::error::find_hint`.
//!
//! Owns only the conversion; it must not classify errors (each operation decides its hints
//! where it knows what went wrong).

/// An operation's error: what went wrong (the enum's variants) and what the user can do.
pub trait OpError: std::error::Error + Send + Sync + Sized + 'static {
    /// What to do about it, when the operation knows.
    fn hint(&self) -> Option<String>;

    /// An error raised below the operation (a task's lock, the engine, a sync) that is
    /// passed on as it came, with its own causes, hints and Ctrl-C marker: `Ok` with it.
    fn passthrough(self) -> Result<anyhow::Error, Self>;

    /// The error from below it holds (the one [`OpError::passthrough`] passes on), if any:
    /// `crate::error` looks into it for a hint or a Ctrl-C even when this error was carried
    /// up inside an `anyhow::Error` without [`OpError::into_report`].
    fn below(&self) -> Option<&anyhow::Error>;

    /// As an `anyhow::Error` for `cli::report`: the hint is found by
    /// `crate::error::find_hint`, and `downcast_ref::<Self>()` still works.
    fn into_report(self) -> anyhow::Error {
        match self.passthrough() {
            Ok(inner) => inner,
            Err(this) => anyhow::Error::new(this),
        }
    }
}

/// `?` from one operation's error into another's, for an operation that calls another: the
/// inner error is passed on as it came ([`OpError::into_report`]), so its hint, causes and
/// Ctrl-C marker stay findable. The target needs a `From<anyhow::Error>` (its `Other`).
/// One line per called operation: `pass_on!(ImageError => SpawnError, RestartError);`
macro_rules! pass_on {
    ($from:ty => $($to:ty),+ $(,)?) => {
        $(
            impl From<$from> for $to {
                fn from(e: $from) -> $to {
                    <$to>::from($crate::ops::OpError::into_report(e))
                }
            }
        )+
    };
}
pub(crate) use pass_on;

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
        fn below(&self) -> Option<&anyhow::Error> {
            match self {
                Demo::Below(e) => Some(e),
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
        use crate::ops::push::PushError;
        // Converted at the edge, or carried up by `?` inside an anyhow chain: the same hint.
        for e in [
            PushError::NoRemote.into_report(),
            anyhow::Error::new(PushError::NoRemote).context("push failed"),
        ] {
            let lines = crate::error::render(&e);
            assert_eq!(
                lines.last().map(String::as_str),
                Some("Hint: add one with `git remote add origin <url>`, or pass --remote"),
                "{lines:?}"
            );
            assert_eq!(lines.iter().filter(|l| l.starts_with("Hint:")).count(), 1);
            assert!(matches!(
                e.downcast_ref::<PushError>(),
                Some(PushError::NoRemote)
            ));
        }
        // A type nobody registered has no hint: hints are found by type, not by text.
        let e = Demo::Missing { name: "x".into() }.into_report();
        assert_eq!(
            crate::error::render(&e),
            vec!["Error: the thing is missing".to_string()]
        );
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
        assert_eq!(crate::error::find_hint(&e).as_deref(), Some("wait"));
    }
}
