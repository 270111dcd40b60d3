//! One exit-code table for `c1m-server` and `c1m-client`, printed by both binaries' `--help`,
//! and the `main` both run: signals set up, an error of kind [`BadInput`] exits 2, any other 1.

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

/// How a binary ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The test ran as asked.
    Ok,
    /// The test failed or was not reached.
    Failed,
    /// Bad usage or input: refused before the test began.
    BadInput,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The table, as `--help` prints it (clap's own usage errors exit 2 as well).
pub const HELP: &str = "\
Exit status:
  0  the test ran as asked (client: every connection made and its echo verified;
     server: stopped by SIGINT/SIGTERM or the end of stdin)
  1  the test failed or was not reached: target not reached, too many errors, a mismatched
     echo, a listener or worker that could not start, a worker process that died
  2  bad usage or input: a flag or value refused, or a plan that cannot fit (ports,
     source addresses × ports, fd limits)";

/// An error that is the caller's input, not the test: the binary exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for BadInput {}

/// The exit for an error: [`Exit::BadInput`] if a [`BadInput`] is anywhere in its chain.
pub fn for_error(e: &(dyn Error + 'static)) -> Exit {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BadInput>() {
            return Exit::BadInput;
        }
        cur = e.source();
    }
    Exit::Failed
}

/// Runs a binary: SIGINT/SIGTERM routed to the stop flag ([`crate::signals`]), then its body;
/// an error is printed as `BINARY: error: what: why` on stderr. `E` is
/// any error that shows itself as `dyn Error` (`anyhow::Error`, a `Box`), so the chain can be
/// searched for a [`BadInput`].
pub fn main<E>(binary: &str, body: impl FnOnce() -> Result<Exit, E>) -> ExitCode
where
    E: AsRef<dyn Error + Send + Sync>,
{
    crate::signals::install();
    match body() {
        Ok(exit) => exit.into(),
        Err(e) => {
            let e: &(dyn Error + 'static) = e.as_ref();
            let mut text = e.to_string();
            let mut cur = e.source();
            while let Some(s) = cur {
                text.push_str(": ");
                text.push_str(&s.to_string());
                cur = s.source();
            }
            eprintln!("{binary}: error: {text}");
            for_error(e).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Context(&'static str, Box<dyn Error + Send + Sync>);
    impl fmt::Display for Context {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Context {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.1)
        }
    }

    #[test]
    fn bad_input_anywhere_in_the_chain_exits_2() {
        let bad = Context("checking ports", Box::new(BadInput("--ports 0".into())));
        assert_eq!(for_error(&bad), Exit::BadInput);
        let io = Context("binding", Box::new(std::io::Error::other("in use")));
        assert_eq!(for_error(&io), Exit::Failed);
        assert_eq!(
            [Exit::Ok, Exit::Failed, Exit::BadInput].map(Exit::code),
            [0, 1, 2]
        );
    }

    #[test]
    fn the_help_lists_every_code() {
        for e in [Exit::Ok, Exit::Failed, Exit::BadInput] {
            assert!(
                HELP.contains(&format!("\n  {}  ", e.code())),
                "{}",
                e.code()
            );
        }
    }
}
